"""A classifier's hidden layers, for detectors that read them (issue 44): `FeatureReader(model)(x, layer)`.

Detectors from the literature (Mahalanobis, LID, ...) work on a hidden layer, not on pixels. Every classifier of
the pipeline is one of two kinds once loaded (`classifier.load_classifier`), and this module reaches the layers of
both, differentiably (the detector-aware attack goes through them):

- a PyTorch module (the built-in ResNet, trained here): `penultimate` is the input of the last `nn.Linear` that
  the forward pass calls (found by a pre-hook on every `nn.Linear`, so the order of the module's attributes does
  not matter); any named submodule (`layers()`: for the ResNet `layer1`, `layer2`, `layer3`) gives its output;
- a brought model (`classifier.source: checkpoint` or `robustbench`): stored as a `torch.export` program (or
  TorchScript) inside `ExternalClassifier`, which normalises the pixels first. Python hooks do not run inside
  such a program, so `penultimate` is read from its graph: a copy of the graph returns the first operand of the
  last `aten.linear` (`aten.addmm`: its second; `aten.matmul`, `aten.mm`) instead of the logits (a TorchScript
  program is frozen first, which inlines its submodule calls). Named intermediate layers are not exposed for such
  a model (the error says so).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .exported import ExportedModule

PENULTIMATE = "penultimate"
LINEAR_OPS = {"aten::linear": 0, "aten::addmm": 1, "aten::matmul": 0}  # op -> which input holds the features


def _script_penultimate(script: torch.jit.ScriptModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """The TorchScript program's input to its last linear layer, as a function of the program's input."""
    frozen = torch.jit.freeze(script.eval())  # a frozen copy: the model itself is not changed
    graph = frozen.graph.copy()
    last = None
    for node in graph.nodes():  # top-level nodes in execution order (calls inlined by freezing)
        if node.kind() in LINEAR_OPS:
            last = node
    if last is None:
        raise ConfigError(
            "classifier: its TorchScript program has no linear layer (aten::linear, addmm or matmul) whose input "
            "could be the penultimate features"
        )
    value = last.inputsAt(LINEAR_OPS[last.kind()])
    for i in reversed(range(len(list(graph.outputs())))):
        graph.eraseOutput(i)
    graph.registerOutput(value)
    torch._C._jit_pass_dce(graph)
    function = torch._C._create_function_from_graph("penultimate_features", graph)
    module = frozen._c
    return lambda x: function(module, x)


EXPORTED_LINEAR_OPS = {"linear": 0, "addmm": 1, "matmul": 0, "mm": 0}


def _exported_penultimate(exported: ExportedModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported program's input to its last linear layer, as a function of the program's input: a copy of
    its graph module whose output is that input."""
    module = exported.graph_module
    graph = torch.fx.Graph()
    returned = graph.graph_copy(module.graph, {})  # every node but the output
    graph._codegen = copy.deepcopy(module.graph._codegen)  # the same calling convention (pytree in and out)
    last = None
    for node in graph.nodes:
        target = node.target
        aten = node.op == "call_function" and getattr(target, "namespace", None) == "aten"
        if aten and target._schema.name.split("::")[-1] in EXPORTED_LINEAR_OPS:
            last = node
    if last is None:
        raise ConfigError(
            "classifier: its exported program has no linear layer (aten.linear, addmm, matmul or mm) whose input "
            "could be the penultimate features"
        )
    features = last.args[EXPORTED_LINEAR_OPS[last.target._schema.name.split("::")[-1]]]
    graph.output((features,) if isinstance(returned, tuple | list) else features)
    features_module = torch.fx.GraphModule(module, graph)
    features_module.graph.eliminate_dead_code()  # the head's nodes
    features_module.recompile()
    return features_module


class FeatureReader:
    """`reader(x, layer)`: the features of images `x` (N x 3 x 32 x 32 in [0, 1]) at `layer` (`PENULTIMATE`, or a
    name of `layers()`); differentiable in `x`."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._script_features = None

    def _brought(self) -> tuple[torch.jit.ScriptModule | ExportedModule, Callable] | None:
        """(its program, the normalisation in front of it) for a brought model, else None."""
        inner = getattr(self.model, "model", None)
        if isinstance(inner, torch.jit.ScriptModule | ExportedModule):
            return inner, lambda x: (x - self.model.mean) / self.model.std
        if isinstance(self.model, torch.jit.ScriptModule | ExportedModule):
            return self.model, lambda x: x
        return None

    def layers(self) -> list[str]:
        """The layers `__call__` can read."""
        if self._brought() is not None:
            return [PENULTIMATE]
        # the children of the model, but not a linear head (its output is the logits)
        return [PENULTIMATE, *(n for n, m in self.model.named_children() if not isinstance(m, nn.Linear))]

    def blocks(self) -> list[str]:
        """The layers a multi-layer detector reads (LID): the stages of a model trained here (its children that are
        sequences of blocks) and the penultimate layer; a brought model's penultimate layer."""
        if self._brought() is not None:
            return [PENULTIMATE]
        stages = [n for n, m in self.model.named_children() if isinstance(m, nn.Sequential)]
        return [*stages, PENULTIMATE]

    def many(self, x: torch.Tensor, layers: list[str]) -> list[torch.Tensor]:
        """Several layers of `x` from one forward pass where the model allows (a model trained here), flattened to
        N x D each, and the logits last."""
        if self._brought() is not None:
            return [self(x, layer).flatten(1) for layer in layers] + [self.model(x)]
        seen, logits = self._read(x, layers)
        return [seen[layer].flatten(1) for layer in layers] + [logits]

    def __call__(self, x: torch.Tensor, layer: str = PENULTIMATE) -> torch.Tensor:
        brought = self._brought()
        if brought is not None:
            if layer != PENULTIMATE:
                raise ConfigError(
                    f"classifier features: layer {layer!r} of a brought (exported or TorchScript) model; such a "
                    f"model exposes only {PENULTIMATE!r}"
                )
            if self._script_features is None:
                program = brought[0]
                self._script_features = (
                    _exported_penultimate(program)
                    if isinstance(program, ExportedModule)
                    else _script_penultimate(program)
                )
            return self._script_features(brought[1](x))
        seen, _ = self._read(x, [layer])
        return seen[layer].flatten(1) if layer == PENULTIMATE else seen[layer]

    def _read(self, x: torch.Tensor, layers: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({layer: its output, the penultimate layer: the input of the last nn.Linear the forward calls}, the
        logits) of one forward pass of a model trained here, through hooks removed afterwards."""
        modules = dict(self.model.named_children())
        unknown = [layer for layer in layers if layer != PENULTIMATE and layer not in modules]
        if unknown:
            raise ConfigError(f"classifier features: no layer {unknown[0]!r}; the model has {self.layers()}")
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        if PENULTIMATE in layers and not linears:
            raise ConfigError(
                "classifier features: the model has no nn.Linear whose input is the penultimate layer"
            )
        seen: dict[str, torch.Tensor] = {}
        hooks = [
            modules[layer].register_forward_hook(lambda _m, _i, out, name=layer: seen.__setitem__(name, out))
            for layer in layers
            if layer != PENULTIMATE
        ]
        if PENULTIMATE in layers:
            hooks += [
                m.register_forward_pre_hook(lambda _m, args: seen.__setitem__(PENULTIMATE, args[0]))
                for m in linears
            ]
        try:
            logits = self.model(x)
        finally:
            for h in hooks:
                h.remove()
        return seen, logits
