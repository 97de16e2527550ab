"""How a classifier is trained (`classifier.training`): the declarations of the training methods, without their
implementation (which lives in `advdefense.robust_training` and needs torch).

A declaration says what a method is called in the tables (`title`), what it is (`reference`), the published
figure it is anchored to where there is one (`anchor`), whether it has a settings block `classifier.<name>`
(`has_settings`), and how many forward + backward passes of the classifier one training image costs
(`passes`: 1 for standard training, 1 + the attack's steps for PGD adversarial training), which the estimate
prices. Standard training is one method among them: a robust classifier is a defence like a detector or a
purifier, and one run can train several side by side (`classifier.training` as a list: one run per method,
gathered side by side in results/classifiers/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .declarations import declared


def _one_pass(settings: dict) -> float:
    return 1.0


def _pgd_passes(settings: dict) -> float:
    return 1.0 + settings["steps"]


def _trades_passes(settings: dict) -> float:
    # the attack's steps on the KL term (each a forward + backward), then the clean and the adversarial forward
    # + backward of the loss
    return 2.0 + settings["steps"]


def _fast_passes(settings: dict) -> float:
    return 2.0  # one FGSM step from a random start, then the training step


STANDARD = "standard"
# an adversarially trained classifier's training curve: PGD-10 accuracy at its eps on this many test images
PGD_CURVE_IMAGES = 200


@dataclass(frozen=True)
class TrainingSpec:
    name: str
    title: str  # its label in the tables
    reference: str
    anchor: str | None = None  # a published figure to compare with (robust accuracy, model, eps), or None
    has_settings: bool = True  # reads the block classifier.<name>
    # forward + backward passes of the classifier per training image and epoch, from the method's settings
    passes: Callable[[dict], float] = field(default=_one_pass, compare=False)
    # a plug-in's settings block classifier.<name>: JSON-schema properties (with defaults); None: the schema
    # file has it (the built-ins) or there is none
    settings_schema: dict | None = field(default=None, compare=False)


TRAININGS: dict[str, TrainingSpec] = {
    spec.name: spec
    for spec in (
        TrainingSpec("standard", "Standard training", "cross-entropy on clean images", has_settings=False),
        TrainingSpec(
            "pgd_at",
            "PGD adversarial training (Madry et al. 2018)",
            "cross-entropy on L-inf PGD adversarials with a random start (Madry et al., ICLR 2018)",
            anchor="ResNet-20, PGD-AT, CIFAR-10: about 74 % clean / 45 % robust under PGD at 8/255 (evaluation.md)",
            passes=_pgd_passes,
        ),
        TrainingSpec(
            "trades",
            "TRADES (Zhang et al. 2019)",
            "clean cross-entropy + beta x KL(adversarial || clean), the adversarial maximising the KL (Zhang et "
            "al., ICML 2019)",
            anchor="WideResNet-34-10, TRADES, CIFAR-10: 53.08 % under AutoAttack at 8/255 (RobustBench, Zhang2019Theoretically)",
            passes=_trades_passes,
        ),
        TrainingSpec(
            "fast_at",
            "Fast adversarial training (Wong et al. 2020)",
            "cross-entropy on one FGSM step from a uniform random start (Wong, Rice & Kolter, ICLR 2020)",
            anchor="PreAct ResNet-18, fast AT, CIFAR-10: 43.21 % under AutoAttack at 8/255 (RobustBench, Wong2020Fast)",
            passes=_fast_passes,
        ),
    )
}
BUILT_IN = frozenset(TRAININGS)


def training_spec(name: str, key: str = "classifier.training") -> TrainingSpec:
    """The declaration of training method `name`; an unknown name is a ConfigError naming `key`."""
    return declared(TRAININGS, name, key, "training method")


def training_methods(classifier: dict) -> list[str]:
    """`classifier.training` as a list of method names (a single name, or a list of them)."""
    training = classifier["training"]
    return [training] if isinstance(training, str) else list(training)


def run_training_settings(classifier: dict, method: str) -> dict:
    """The `classifier` settings one run trains with: `training` its single method, with that method's block
    and none of the other methods' (changing another method's settings re-runs nothing of this run). Standard
    training is said by leaving `training` out, so a classifier trained before training methods existed keeps
    its settings and is not trained again."""
    blocks = {name for name in TRAININGS if TRAININGS[name].has_settings}
    out = {k: v for k, v in classifier.items() if k not in blocks and k != "training"}
    if method != STANDARD:
        out["training"] = method
    if training_spec(method).has_settings:
        out[method] = classifier.get(method) or {}
    return out


def training_title(name: str) -> str:
    spec = TRAININGS.get(name)
    return spec.title if spec is not None else name
