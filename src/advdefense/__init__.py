"""advdefense: the library behind the Snakemake pipeline reproducing "Methods to defend adversarial images".

Modules: config (validation), data (dataset stage), models (ResNet, Glow, autoencoder, detectors,
checkpoints), training (the one training loop), classifier, attacks, flow, purification,
detection, metrics, tables, h5io.
"""

__version__ = "0.1.0"
