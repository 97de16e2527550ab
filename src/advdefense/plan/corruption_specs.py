"""The natural corruptions' names (CIFAR-10-C, Hendrycks & Dietterich 2019), torch-free: what a config may list,
and when a run measures RobustBench's `corruptions_acc` (every corruption at every severity)."""

from __future__ import annotations

# the 15 corruptions of CIFAR-10-C in the published order (noise, blur, weather, digital)
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
IDENTITY = "identity"  # returns the image unchanged: a control (its accuracy is the clean accuracy)
SEVERITIES = (1, 2, 3, 4, 5)


def is_cifar10c(names, severities) -> bool:
    """Whether corruptions `names` at `severities` cover CIFAR-10-C whole (15 x 5): RobustBench's corruption metric
    is their mean accuracy, and nothing less."""
    return set(names) >= set(CORRUPTIONS) and set(severities) >= set(SEVERITIES)
