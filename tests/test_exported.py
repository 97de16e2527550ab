"""torch.export programs (.pt2) as brought classifiers and as the pipeline's stored copies (issue 44, item 5):
read without running anything of the file, and refused where the file would make torch run code."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch
from torch import nn

from advdefense.errors import PipelineFileError
from advdefense.models.archives import UnsafeModelFile
from advdefense.models.checkpoint import load_checkpoint, save_checkpoint
from advdefense.models.exported import (
    ExportedModule,
    ExportFailed,
    check_expression,
    export_model,
    is_exported_archive,
    load_exported,
)
from advdefense.models.external import ExternalClassifier, load_user_model

BATCH = ({0: torch.export.Dim.AUTO},)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)
    ).eval()


@pytest.fixture(scope="module")
def archive() -> bytes:
    buffer = io.BytesIO()
    torch.export.save(
        torch.export.export(_model(), (torch.rand(8, 3, 32, 32),), dynamic_shapes=BATCH), buffer
    )
    return buffer.getvalue()


def _patched(data: bytes, program=None, add: dict[str, bytes] | None = None, config=None) -> bytes:
    """The archive with its program JSON (and a payload config) changed by the given functions, entries added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(out, "w") as w:
        prefix = z.namelist()[0].split("/")[0]
        for info in z.infolist():
            content = z.read(info)
            if info.filename.endswith("models/model.json") and program is not None:
                parsed = json.loads(content)
                program(parsed)
                content = json.dumps(parsed).encode()
            if info.filename.endswith("model_constants_config.json") and config is not None:
                parsed = json.loads(content)
                config(parsed)
                content = json.dumps(parsed).encode()
            w.writestr(info, content)
        for name, content in (add or {}).items():
            w.writestr(f"{prefix}/{name}", content)
    return out.getvalue()


def test_an_exported_program_round_trips_and_keeps_its_logits_and_gradients(archive, tmp_path):
    model, x = _model(), torch.rand(5, 3, 32, 32)
    assert is_exported_archive(archive) and not is_exported_archive(b"not a zip")
    loaded = load_exported(archive, "m.pt2")
    assert isinstance(loaded, ExportedModule)
    assert torch.allclose(loaded(x), model(x), atol=1e-5) and loaded(x[:1]).shape == (1, 10)
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
    wrapped = ExternalClassifier(loaded, 10, "export", [0.5] * 3, [0.25] * 3)
    wrapped.eval()  # torch refuses eval() on an exported program's module; the wrapper does not reach into it
    x_grad = x.clone().requires_grad_(True)
    wrapped(x_grad).logsumexp(1).sum().backward()
    assert x_grad.grad.abs().sum() > 0  # an attack can follow the gradient through the program
    # the pipeline's checkpoint stores the program's archive: it loads with weights_only=True and gives the logits
    save_checkpoint(tmp_path / "c.pt", "classifier", wrapped, {})
    raw = torch.load(tmp_path / "c.pt", weights_only=True)
    assert raw["arch"]["format"] == "export" and set(raw["state_dict"]) == {"exported"}
    stored, _ = load_checkpoint(tmp_path / "c.pt", "classifier")
    assert torch.allclose(stored(x), model((x - 0.5) / 0.25), atol=1e-5)
    # a brought .pt2 file is recognised without a builder
    (tmp_path / "m.pt2").write_bytes(archive)
    brought, fmt = load_user_model(tmp_path / "m.pt2", None)
    assert fmt == "export" and torch.allclose(brought(x), model(x), atol=1e-5)


def _expression(program, text):
    values = program["graph_module"]["graph"]["tensor_values"]
    next(iter(values.values()))["sizes"][0] = {"as_expr": {"expr_str": text, "hint": None}}


def _target(program, target):
    program["graph_module"]["graph"]["nodes"][1]["target"] = target


@pytest.mark.parametrize(
    "change,message",
    [
        # torch would hand it to sympy.sympify, that is to eval
        (
            lambda p: _expression(p, "__import__('os').system('touch pwned')"),
            "a call of something other than a",
        ),
        (lambda p: _expression(p, "s0.__class__"), "holds Attribute"),
        (lambda p: _expression(p, "open('x')"), "the name 'open'"),
        # the node's target is resolved by name under torch: torch.load would be called by the graph
        (lambda p: _target(p, "torch.load"), "calls 'torch.load', not an ATen operation"),
        (lambda p: _target(p, "#my_namespace::op"), "not an ATen operation"),
        (lambda p: _target(p, "torch.ops.aten.from_file.default"), "reaches files, storages"),
        # guards become Python source that torch compiles and runs
        (lambda p: p.__setitem__("guards_code", ["__import__('os')"]), "carries guards"),
        (lambda p: p["graph_module"]["graph"].__setitem__("custom_obj_values", {"x": {}}), "custom objects"),
    ],
)
def test_a_program_that_would_make_torch_run_code_is_refused_before_anything_is_built(
    archive, change, message
):
    with pytest.raises(UnsafeModelFile, match=message):
        load_exported(_patched(archive, program=change), "evil.pt2")


def test_pickled_objects_and_compiled_code_in_the_archive_are_refused(archive):
    def opaque(config):  # an opaque constant: torch would pickle.loads it
        config["config"]["c"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True}

    evil = _patched(archive, config=opaque, add={"data/constants/opaque_obj_0": b"cos\nsystem\n."})
    with pytest.raises(UnsafeModelFile, match="not a tensor"):
        load_exported(evil, "evil.pt2")

    def pickled(config):  # a pickled tensor constant: torch reads it with weights_only=False, we with True
        config["config"]["c"] = {"path_name": "tensor_0", "is_param": False, "use_pickle": True}

    class Runs:
        def __reduce__(self):
            return (print, ("ran",))

    payload = io.BytesIO()
    torch.save(Runs(), payload)
    evil = _patched(archive, config=pickled, add={"data/constants/tensor_0": payload.getvalue()})
    with pytest.raises(UnsafeModelFile, match="not loadable with weights_only=True"):
        load_exported(evil, "evil.pt2")
    with pytest.raises(UnsafeModelFile, match="AOTInductor"):
        load_exported(_patched(archive, add={"data/aotinductor/model/model.so": b"\x7fELF"}), "so.pt2")
    with pytest.raises(PipelineFileError, match="one, saved by torch.export.save"):
        load_exported(_patched(archive, add={"models/second.json": b"{}"}), "two.pt2")


def test_shape_expressions_of_real_programs_pass():
    for text in [
        "s0",
        "s31 + 1",
        "2*s0",
        "Symbol('s31', positive=True, integer=True)",
        "FloorDiv(s0, 2)",
        "Max(1, s0)",
    ]:
        check_expression(text, "ok")


def test_export_refuses_a_model_that_changes_its_state_or_computes_something_else():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3072, 10)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls.add_(1)
            return self.linear(x.flatten(1)) + self.calls

    with pytest.raises(UnsafeModelFile, match="writes into b_calls"):
        export_model(Counter().eval(), torch.rand(8, 3, 32, 32), "counter")

    class BatchDependent(nn.Module):  # a Python branch on the batch size: export keeps the branch it saw
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3072, 10)

        def forward(self, x):
            out = self.linear(x.flatten(1))
            return out * 2 if x.shape[0] > 1 else out

    with pytest.raises(ExportFailed):
        export_model(BatchDependent().eval(), torch.rand(8, 3, 32, 32), "branchy")
