"""One plug-in file with a defence of each kind (README "Adding a defence"): put a file like this one in
src/advdefense/plugins/, or run with ADVDEFENSE_PLUGINS=docs/plugins, and every run, table, figure and estimate
has them (`methods: null` runs every registered one). The attributes that declare a class (name, title, cost,
settings_schema ...) are literals: the DAG reads them from this file without running it (or importing torch).
tests/test_plugin_files.py runs this file.
"""

import torch.nn.functional as F

from advdefense.detectors import Detector
from advdefense.detectors import register as register_detector
from advdefense.purifiers import Purifier
from advdefense.purifiers import register as register_purifier
from advdefense.robust_training import TrainingMethod
from advdefense.robust_training import register as register_training


@register_purifier
class BoxBlur(Purifier):
    """A k x k mean filter; autograd gives its true gradient (gradient "exact", the default)."""

    name, title, reference = "box_blur", "Box blur (example plug-in)", "a k x k mean filter"
    cost = 0.02  # of a ResNet-20 forward pass, for the estimate
    settings_schema = {"size": {"type": "integer", "minimum": 1, "default": 3}}  # purification.box_blur.size

    def forward(self, x):
        k = self.settings["size"]
        out = F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False)
        return out[..., : x.shape[-2], : x.shape[-1]]  # an even k pads one pixel too many


@register_detector
class HighFrequencyEnergy(Detector):
    """The mean absolute difference between an image and its 3 x 3 box blur (adversarial noise is high
    frequency): no parameters, differentiable, so the detector-aware attack targets it."""

    name, title = "high_frequency", "High-frequency energy (example plug-in)"

    def torch_scorer(self):
        def score(x):
            blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            return (x - blurred).abs().flatten(1).mean(1)

        return score


@register_training
class LabelSmoothing(TrainingMethod):
    """Cross-entropy against smoothed labels (Szegedy et al. 2016); not a defence, a training method to compare."""

    name, title = "label_smoothing", "Label smoothing (example plug-in)"
    reference = "cross-entropy with label smoothing (Szegedy et al., CVPR 2016)"
    passes = 1  # forward + backward passes per training image, for the estimate
    settings_schema = {"smoothing": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.1}}

    def loss(self, x, labels, generator):
        logits = self.forward(x)
        return F.cross_entropy(logits, labels, label_smoothing=self.settings["smoothing"]), logits
