"""The planning layer: every name and decision of the pipeline, once, below the stages and without torch.

- `names`: tags (`eps_tag`, `attack_key`, `POOLED`, `fpr_label`), run names, the results file patterns, the
  runtime-only config keys and the sha256 that pins a file;
- `attack_specs`: what an entry of `attacks:` may say (Foolbox classes, AutoAttack versions, parameter
  ranges, epsilons, shards);
- `detector_specs`: the detectors' declarations (inputs, models they need, supervised, differentiable);
- `purifier_specs`, `training_specs`: the purifiers' and training methods' declarations;
- `plugins`: plug-in files (one class each defence, `src/advdefense/plugins/` or $ADVDEFENSE_PLUGINS), whose
  declarations join those tables here, read without running them;
- `decisions`: what a validated configuration makes (attacked splits, detected attacks, aware targets, models
  trained, tables gathered).

The Snakefile's DAG build, `advdefense-check-config`, `advdefense-estimate`, the tables and the figures read
this layer; the stage modules (attacks, detection, purification ...) sit above it. It imports the standard
library, `advdefense.errors` and (to check attack classes) Foolbox, never torch (tests/test_plan.py). Import
from the module that owns a name: `from advdefense.plan.names import eps_tag`.
"""

from .attack_specs import ATTACK_FAMILIES, AttackFamilySpec  # noqa: E402
from .detector_specs import DETECTORS, DetectorSpec  # noqa: E402
from .plugins import declare_plugins  # noqa: E402
from .purifier_specs import PURIFIERS, PurifierSpec  # noqa: E402
from .training_specs import TRAININGS, TrainingSpec  # noqa: E402

# every plug-in file's declarations join their tables before any name of this layer is used
declare_plugins(
    {
        "purifier": (PURIFIERS, PurifierSpec),
        "detector": (DETECTORS, DetectorSpec),
        "training method": (TRAININGS, TrainingSpec),
        "attack family": (ATTACK_FAMILIES, AttackFamilySpec),
    }
)
