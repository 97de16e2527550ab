"""Exported programs (`torch.export`, a `.pt2` file): a classifier a user may bring, and the form in which the
pipeline stores its own copies of brought models (a builder's model, a RobustBench model).

An exported program is a graph of ATen operations plus its weights, so what it may do is read from the graph: every
call must be an `aten` operation outside `archives.DENIED_ATEN` (or `operator.getitem`), and it may not change
its own buffers. It replaces TorchScript, which torch 2.14 deprecates (`torch.jit.trace`, `script`, `save`);
TorchScript files are still read (`archives.load_torchscript`).

**Why not `torch.export.load`.** On a file from elsewhere it runs code from the file, four ways (torch 2.14,
`torch/export/pt2_archive/_package.py` and `torch/_export/serde/serialize.py`): weights and constants stored
pickled are read with `torch.load(weights_only=False)`; opaque constants with `pickle.loads`; the example inputs
fall back to `torch.load(weights_only=False)`; every symbolic shape expression goes through `sympy.sympify`, which
is Python's `eval` (`"__import__('os')..."` runs); and the program's guards are turned into Python source and
`exec`-ed. `load_exported` reads the same archive with none of them: it checks the archive's declared sizes, then
the serialized program *before* anything of it is built (every operation's name, every shape expression parsed as
an expression of sympy's constructors only, no guards, custom objects or constants that are not plain tensors),
reads the weights raw or with `torch.load(weights_only=True)`, never reads the example inputs, and hands only then
the checked parts to torch's deserializer; the built graph is checked once more.
"""

from __future__ import annotations

import ast
import io
import json
import operator
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, PipelineFileError
from .archives import DENIED_ATEN, UnsafeModelFile, archive_handle, check_archive

# a program exported here takes a batch of any size (the pipeline feeds batches of every size up to its batch_size)
BATCH = {0: torch.export.Dim.AUTO}
MODEL_NAME = "model"  # torch.export.save's name for the one program of a file


def is_exported_archive(source: str | Path | bytes) -> bool:
    """Whether `source` is a zip archive written by `torch.export.save` (its `archive_format` entry says pt2)."""
    handle = archive_handle(source)
    if not zipfile.is_zipfile(handle):
        return False
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    with zipfile.ZipFile(handle) as archive:
        formats = [n for n in archive.namelist() if n.split("/")[-1] == "archive_format"]
        return len(formats) == 1 and archive.read(formats[0]).strip() == b"pt2"


# ---- checks of the serialized program, before torch builds anything of it ----

# what a shape expression may call: sympy's constructors of numbers, symbols, arithmetic and relations, and the
# functions torch's deserializer registers (torch.utils._sympy.functions)
SYMPY_NAMES = frozenset(
    [
        "Symbol",
        "Integer",
        "Float",
        "Rational",
        "Add",
        "Mul",
        "Pow",
        "Max",
        "Min",
        "Abs",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "StrictLessThan",
        "StrictGreaterThan",
        "LessThan",
        "GreaterThan",
        "Equality",
        "Unequality",
        "And",
        "Or",
        "Not",
        "true",
        "false",
        "oo",
        "zoo",
        "nan",
        "floor",
        "ceiling",
        "Mod",
        "sqrt",
        "Piecewise",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
        "OpaqueUnaryFn_sqrt",
        "BitwiseFn_bitwise_and",
        "BitwiseFn_bitwise_or",
    ]
)
SYMBOL = re.compile(r"^[a-z]+\d+$")  # s0, u3, ...: the symbols of shapes
EXPRESSION_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Call,
    ast.keyword,
    ast.Name,
    ast.Constant,
    ast.Load,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)
ATEN_TARGET = re.compile(r"^torch\.ops\.aten\.(\w+)\.(\w+)$")
GETITEM = "_operator.getitem"


def check_expression(text: str, what: str) -> None:
    """Refuse a shape expression that is more than arithmetic on shape symbols: torch's deserializer hands it to
    `sympy.sympify`, that is to `eval`. Allowed: numbers, the names of SYMPY_NAMES and of shape symbols, calls of
    those names with constant or nested arguments; no attribute, subscript, lambda or other name."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise UnsafeModelFile(
            f"{what}: a shape expression that is not an expression: {text[:120]!r}"
        ) from None
    for node in ast.walk(tree):
        bad = None
        if not isinstance(node, EXPRESSION_NODES):
            bad = type(node).__name__
        elif isinstance(node, ast.Name) and node.id not in SYMPY_NAMES and not SYMBOL.match(node.id):
            bad = f"the name {node.id!r}"
        elif isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            bad = "a call of something other than a name"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and not SYMBOL.match(node.value):
            bad = f"the string {node.value!r}"
        if bad is not None:
            raise UnsafeModelFile(
                f"{what}: a shape expression holds {bad} ({text[:120]!r}); torch would evaluate it as Python "
                f"(sympy.sympify), so the file is refused"
            )


def _walk(obj, path=""):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield path, key, value
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk(item, f"{path}[]")


def check_serialized_program(program: dict, what: str) -> None:
    """The serialized program (`models/<name>.json`, parsed): only ATen operations and getitem, every shape
    expression plain arithmetic, no guards (torch turns them into Python source and runs it), no custom objects,
    no subgraphs (higher-order operations)."""
    if program.get("guards_code"):
        raise UnsafeModelFile(
            f"{what}: the program carries guards ({len(program['guards_code'])}), Python source that torch would "
            f"compile and run when the program is called; refused"
        )
    graph = program.get("graph_module", {}).get("graph", {})
    if graph.get("custom_obj_values"):
        raise UnsafeModelFile(f"{what}: the program holds custom objects (script objects); refused")
    for path, key, value in _walk(program):
        if key == "expr_str":
            check_expression(str(value), what)
        elif key == "target" and path.endswith("nodes[]"):
            match = ATEN_TARGET.match(str(value))
            if value != GETITEM and match is None:
                raise UnsafeModelFile(
                    f"{what}: the program calls {str(value)[:120]!r}, not an ATen operation; a classifier may only "
                    f"compute on tensors, so it is refused"
                )
            if match is not None and f"aten::{match.group(1)}" in DENIED_ATEN:
                raise UnsafeModelFile(
                    f"{what}: the program calls {value}: it reaches files, storages, the console or the global "
                    f"random state; refused"
                )
        elif key == "as_graph":
            raise UnsafeModelFile(f"{what}: the program holds a subgraph (a higher-order operation); refused")


# ---- reading the archive ----


class _Archive:
    """The entries of a `torch.export.save` archive under its one top-level folder."""

    def __init__(self, source: str | Path | bytes, what: str):
        self.what = what
        handle = archive_handle(source)
        self.zip = zipfile.ZipFile(handle)
        names = self.zip.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1:
            raise PipelineFileError(f"{what}: not a torch.export archive (entries under {sorted(tops)[:5]})")
        self.prefix = f"{tops.pop()}/"
        self.names = {n[len(self.prefix) :] for n in names}

    def read(self, name: str) -> bytes:
        if name not in self.names:
            raise PipelineFileError(f"{self.what}: the archive lacks {name}")
        return self.zip.read(self.prefix + name)


def _tensor_meta(meta: dict) -> tuple[torch.dtype, list[int], list[int], int]:
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE

    def ints(values):
        out = []
        for v in values:
            if "as_int" not in v:
                raise PipelineFileError("a weight of symbolic size")
            out.append(int(v["as_int"]))
        return out

    dtype = _SERIALIZE_TO_TORCH_DTYPE[meta["dtype"]]
    offset = meta.get("storage_offset", {"as_int": 0})
    return dtype, ints(meta["sizes"]), ints(meta["strides"]), ints([offset])[0]


def _read_tensors(archive: _Archive, config_name: str, folder: str, what: str) -> dict[str, torch.Tensor]:
    """The tensors a payload config (weights or constants) names: raw bytes viewed with their dtype, sizes and
    strides (aliases kept), or a pickled tensor read with weights_only=True; anything else is refused."""
    if config_name not in archive.names:
        raise PipelineFileError(f"{what}: the archive lacks {config_name} (an older torch.export format?)")
    config = json.loads(archive.read(config_name))["config"]
    files: dict[str, torch.Tensor] = {}
    out = {}
    for fqn, meta in config.items():
        path = meta["path_name"]
        if not path.startswith(("weight_", "tensor_")):
            raise UnsafeModelFile(
                f"{what}: {fqn} is stored as {path!r}, not a tensor (a pickled object); refused"
            )
        data = archive.read(folder + path)
        if meta.get("use_pickle"):
            try:
                out[fqn] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            except Exception as exc:
                raise UnsafeModelFile(
                    f"{what}: {fqn} is pickled and not loadable with weights_only=True ({type(exc).__name__}); "
                    f"refused"
                ) from exc
            continue
        dtype, sizes, strides, offset = _tensor_meta(meta["tensor_meta"])
        if path not in files:
            flat = torch.frombuffer(bytearray(data), dtype=dtype) if data else torch.zeros(0, dtype=dtype)
            files[path] = flat
        tensor = torch.as_strided(files[path], sizes, strides, offset) if sizes else files[path][offset]
        out[fqn] = nn.Parameter(tensor, requires_grad=False) if meta.get("is_param") else tensor
    return out


def _written_inputs(node: torch.fx.Node) -> list[torch.fx.Node]:
    """The tensors that an operation writes into (its schema's mutable arguments)."""
    schema = node.target._schema
    written = []
    for i, argument in enumerate(schema.arguments):
        if argument.alias_info is not None and argument.alias_info.is_write:
            value = node.args[i] if i < len(node.args) else node.kwargs.get(argument.name)
            written += [
                v
                for v in (value if isinstance(value, list | tuple) else [value])
                if isinstance(v, torch.fx.Node)
            ]
    return written


def _returns_an_alias(node: torch.fx.Node) -> bool:
    """Whether an operation's output is a view of (or the same tensor as) one of its inputs."""
    return any(r.alias_info is not None for r in node.target._schema.returns)


def check_exported_graph(program: torch.export.ExportedProgram, what: str) -> None:
    """The built program: every call an ATen operation outside DENIED_ATEN (no raw storages) or getitem, and no
    write into its weights, buffers, constants or input (through a view too; its output would depend on how often
    it was called). In-place operations on the tensors it computes are allowed (ReLU(inplace=True))."""
    mutated = program.graph_signature.buffers_to_mutate
    if mutated:
        raise UnsafeModelFile(
            f"{what}: the program changes its own buffers ({', '.join(list(mutated.values())[:3])}) when called: "
            f"its outputs would depend on how often it was called; export it in eval mode"
        )
    state: set[torch.fx.Node] = set()  # the placeholders (weights, buffers, constants, input) and their views
    for node in program.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            state.add(node)
            continue
        target = node.target
        if node.op == "call_function" and target is operator.getitem:
            continue
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            raise UnsafeModelFile(
                f"{what}: the program's node {node.name} ({node.op} {target}) is not an ATen call"
            )
        if target.namespace != "aten" or f"aten::{target._schema.name.split('::')[-1]}" in DENIED_ATEN:
            raise UnsafeModelFile(f"{what}: the program calls {target}: not tensor arithmetic; refused")
        if "Storage" in str(target._schema):
            raise UnsafeModelFile(
                f"{what}: the program calls {target}, which works on a raw storage; refused"
            )
        hit = [v.name for v in _written_inputs(node) if v in state]
        if hit:
            raise UnsafeModelFile(
                f"{what}: the program writes into {hit[0]} ({target}), a weight, buffer, constant or its input: "
                f"its outputs would depend on how often it was called; export it in eval mode without state that "
                f"changes with use"
            )
        if _returns_an_alias(node) and any(isinstance(a, torch.fx.Node) and a in state for a in node.args):
            state.add(node)


def load_exported(source: str | Path | bytes, what: str) -> ExportedModule:
    """A `torch.export.save` archive as a module, read without running anything of the file (module docstring)."""
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass

    check_archive(source, what)
    try:
        archive = _Archive(source, what)
    except (zipfile.BadZipFile, OSError) as exc:
        raise PipelineFileError(f"{what}: not a torch.export archive ({exc})") from None
    if archive.read("archive_format").strip() != b"pt2":
        raise PipelineFileError(f"{what}: not a torch.export archive (archive_format is not pt2)")
    models = sorted(n for n in archive.names if n.startswith("models/") and n.endswith(".json"))
    if models != [f"models/{MODEL_NAME}.json"]:
        raise PipelineFileError(
            f"{what}: holds {len(models)} programs ({', '.join(models[:3])}); one, saved by torch.export.save, "
            f"is expected"
        )
    if any(n.startswith("data/aotinductor/") for n in archive.names):
        raise UnsafeModelFile(f"{what}: holds compiled AOTInductor code (a shared library); refused")
    try:
        serialized = json.loads(archive.read(models[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PipelineFileError(f"{what}: its program is not JSON ({exc})") from None
    check_serialized_program(serialized, what)
    state = _read_tensors(archive, f"data/weights/{MODEL_NAME}_weights_config.json", "data/weights/", what)
    constants = _read_tensors(
        archive, f"data/constants/{MODEL_NAME}_constants_config.json", "data/constants/", what
    )
    try:
        program = ExportedProgramDeserializer().deserialize(
            _dict_to_dataclass(schema.ExportedProgram, serialized), state, constants, None
        )
    except UnsafeModelFile:
        raise
    except Exception as exc:
        raise PipelineFileError(
            f"{what}: the exported program cannot be read by torch {torch.__version__} ({type(exc).__name__}: "
            f"{str(exc)[:200]})"
        ) from exc
    check_exported_graph(program, what)
    return ExportedModule(program)


class ExportedModule(nn.Module):
    """An exported program as a module (differentiable: its graph is ATen operations). `train()` / `eval()` do
    not reach into it: torch refuses them on an exported program, which has no training mode (it was exported in
    eval mode)."""

    def __init__(self, program: torch.export.ExportedProgram):
        super().__init__()
        self.program = program
        self.graph_module = program.module()

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.export.save(self.program, buffer)
        return buffer.getvalue()


class ExportFailed(ConfigError):
    """torch.export could not export a model, or its program computes something else than the model."""


def export_model(model: nn.Module, images: torch.Tensor, what: str) -> ExportedModule:
    """`model` (eval mode) exported on `images` with a batch dimension of any size, checked to give the model's
    logits on them and on a single image: what a builder's or a RobustBench model is stored as, so that no later
    job calls the code that built it."""
    model.eval()
    try:
        with torch.no_grad():
            program = torch.export.export(model, (images[:8],), dynamic_shapes=(BATCH,))
    except Exception as exc:
        raise ExportFailed(
            f"{what}: the model cannot be exported with torch.export ({type(exc).__name__}: {str(exc)[:300]}); "
            f"export it yourself (torch.export.export, torch.export.save) and bring the .pt2 file without a builder"
        ) from exc
    check_exported_graph(program, what)
    exported = ExportedModule(program)
    with torch.no_grad():
        for x in (images, images[:1]):
            expected, found = model(x), exported(x)
            scale = float(expected.abs().max().clamp_min(1.0))
            if found.shape != expected.shape or not torch.allclose(
                found, expected, rtol=1e-4, atol=1e-4 * scale
            ):
                raise ExportFailed(
                    f"{what}: the exported program gives other logits than the model itself on {len(x)} image(s) "
                    f"(data-dependent control flow?); export it yourself and bring the .pt2 file"
                )
    return exported
