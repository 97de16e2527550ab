"""Issue 44, item 3: a classifier's features for detectors, for every kind of classifier the pipeline holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advdefense.detectors import DetectorContext
from advdefense.errors import ConfigError
from advdefense.inference import evaluation_model
from advdefense.models.exported import ExportedModule, export_model, load_exported
from advdefense.models.external import ExternalClassifier, stored_program, traced
from advdefense.models.features import PENULTIMATE, FeatureReader
from advdefense.models.resnet import CifarResNet

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _resnet() -> CifarResNet:
    torch.manual_seed(0)
    model = CifarResNet(8).eval()
    with torch.no_grad():  # batch norm statistics that are not the identity: folding must keep them
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model


def _by_hand(model: CifarResNet, x: torch.Tensor) -> torch.Tensor:
    """The pooled vector the ResNet's classifier head reads, computed layer by layer."""
    out = F.relu(model.bn1(model.conv1(model.normalize(x))))
    out = model.layer3(model.layer2(model.layer1(out)))
    return F.adaptive_avg_pool2d(out, 1).flatten(1)


def test_the_built_in_resnet_gives_its_penultimate_layer_and_named_layers():
    model, x = _resnet(), torch.rand(5, 3, 32, 32)
    copy = evaluation_model(model)  # what a detector job holds: batch norm folded, channels-last
    reader = FeatureReader(copy)
    expected = _by_hand(model, x)
    got = reader(x)
    assert got.shape == (5, 4 * 16) and torch.allclose(got, expected, atol=1e-4)
    assert torch.allclose(copy.fc(got), model(x), atol=1e-4)  # the head of those features: the logits
    assert {"layer1", "layer2", "layer3"} <= set(reader.layers())
    assert reader(x, "layer2").shape == (5, 32, 16, 16)
    assert reader.blocks() == ["layer1", "layer2", "layer3", PENULTIMATE]
    *layers, logits = reader.many(x, reader.blocks())  # one forward pass: the same as one layer at a time
    assert torch.allclose(layers[1], reader(x, "layer2").flatten(1)) and torch.allclose(layers[-1], got)
    assert torch.allclose(logits, copy(x))
    with pytest.raises(ConfigError, match="no layer 'layer9'"):
        reader(x, "layer9")


@pytest.mark.parametrize("brought_as", ["export", "torchscript", "builder", "builder-traced"])
def test_a_brought_model_gives_its_penultimate_layer_through_its_program(brought_as, tmp_path):
    """A brought classifier is a program behind the pipeline's normalisation: a torch.export program (brought as a
    .pt2 file, or exported from a builder's or a RobustBench model when imported), or TorchScript (brought, or a
    builder's model traced where export fails): its features come from its graph, equal to the original model's on
    the normalised pixels, and gradients reach the pixels."""
    model, x = _resnet(), torch.rand(6, 3, 32, 32)
    if brought_as == "torchscript":
        path = tmp_path / "m.pt"
        torch.jit.save(torch.jit.trace(model, x), str(path))
        program = torch.jit.load(str(path))
    elif brought_as == "export":
        path = tmp_path / "m.pt2"
        torch.export.save(
            torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},)), path
        )
        program = load_exported(path, "m.pt2")
    elif brought_as == "builder":
        program = stored_program(model, x, "builder")
        assert isinstance(program, ExportedModule)
    else:
        program = traced(model, x)
    external = evaluation_model(ExternalClassifier(program, 10, brought_as, MEAN, STD))
    reader = FeatureReader(external)
    normalised = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    x_grad = x.clone().requires_grad_(True)
    got = reader(x_grad)
    assert torch.allclose(got, _by_hand(model, normalised), atol=1e-4)
    got.square().sum().backward()
    assert x_grad.grad is not None and x_grad.grad.abs().sum() > 0
    assert reader.layers() == reader.blocks() == [PENULTIMATE]
    penultimate, logits = reader.many(x, [PENULTIMATE])
    assert torch.allclose(penultimate, got.detach(), atol=1e-5) and torch.allclose(logits, external(x))
    with pytest.raises(ConfigError, match="exposes only 'penultimate'"):
        reader(x, "layer1")
    assert torch.allclose(external(x), model(normalised), atol=1e-4)  # the model itself is unchanged


def test_the_last_linear_called_is_the_head_whatever_the_attribute_order():
    class Mlp(nn.Module):  # the head is declared first, called last
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(7, 10)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 7), nn.ReLU())

        def forward(self, x):
            return self.head(self.body(x))

    torch.manual_seed(0)
    model, x = Mlp().eval(), torch.rand(3, 3, 32, 32)
    expected = model.body(x)
    assert torch.allclose(FeatureReader(model)(x), expected)
    program = ExternalClassifier(torch.jit.trace(model, x), 10)
    assert torch.allclose(FeatureReader(program)(x), expected, atol=1e-6)
    program = ExternalClassifier(export_model(model, x, "mlp"), 10)
    assert torch.allclose(FeatureReader(program)(x), expected, atol=1e-6)
    with pytest.raises(ConfigError, match="no nn.Linear"):
        FeatureReader(nn.Sequential(nn.Flatten()))(x)


def test_a_detector_reaches_the_features_through_its_context(tmp_path):
    model, x = _resnet(), torch.rand(2, 3, 32, 32)
    context = DetectorContext(0, torch.device("cpu"), Path(tmp_path), {"classifier": evaluation_model(model)})
    assert torch.allclose(context.features(x, "mine"), _by_hand(model, x), atol=1e-4)
    with pytest.raises(ConfigError, match="'mine' needs the classifier"):
        DetectorContext(0, torch.device("cpu"), Path(tmp_path)).features(x, "mine")
