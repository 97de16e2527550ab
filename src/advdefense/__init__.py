"""advdefense: the library behind the Snakemake pipeline reproducing "Methods to defend adversarial images".

Floors, from the bottom (a module imports only from its own floor or those below it):

- `errors`; `plan` (torch-free names and decisions: `names`, `attack_specs`, `detector_specs`,
  `training_specs`, `purifier_specs`, `decisions`, `builder_spec`); `progress`, `metrics`;
- files and sources, without torch: `h5io` (atomic HDF5 and JSON writes, readers), `sources` (the CIFAR
  python layouts, read safely), `data` (the dataset stage's HDF5 file), `attack_files`, `purified_files`;
  `config` (schema validation and every check before a job runs), `estimate` (run time per stage);
- torch: `runtime` (the device), `models` (ResNet, Glow, autoencoder, detector networks, checkpoints, brought
  classifiers, RobustBench zoo models), `inference` (the evaluation copy of a model), `augment`, `training` (the one training loop),
  `robust_training` (how the classifier is trained: standard, PGD-AT, TRADES, fast AT), `squeezers` (the reference
  defences' input transformations and BPDA);
- stages: `classifier`, `attack_methods` (Foolbox, AutoAttack and restarts behind one protocol), `autoattack`,
  `attacks` (the batch runner and the attack stage), `flow` (Glow and latents), `purifiers` (one class per
  purifier: autoencoder, JPEG, bit depth, median; BPDA, EOT), `purification` (the stage), `detectors`
  (one class per detector), `aware` (the detector-aware attack), `detection` (the detection stage);
- reports, without torch: `tables`, `figures`, `seeds` (mean and sd over seeds; training methods side by side), `robustbench_info` (AutoAttack
  results as RobustBench model_info entries);
- `snakemake_job`: what every workflow script runs first (logging, threads).
"""

__version__ = "0.1.0"
