"""What a model file may be before torch reads it, and what a TorchScript program may do once read.

A checkpoint and a TorchScript file are zip archives. Torch allocates each entry at its *declared* size before it
finds out whether the model is one it wants, so a 1 MB file that declares a deflated 1 GiB storage costs 1.5 GB
before any refusal: `check_archive` reads the zip's directory (a few kB) and refuses declared sizes above a limit,
and compressed entries that inflate far beyond their stored bytes (`torch.save` never compresses).

A TorchScript file is a program, not data: `torch.jit.load` runs its `__setstate__` methods, and its `forward` can
call `torch.from_file(path, shared=True)` and write through the mapped storage, print, reseed the random number
generator or change the module's own attributes. `check_torchscript_source` refuses `__setstate__` in the
archive's code before it is loaded; `check_torchscript_ops` walks the loaded module's graph (every method it calls
inlined, every nested block) and refuses any operation outside tensor arithmetic, naming it.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import torch

from ..errors import PipelineFileError

MIN_TORCH = (2, 6)  # torch.load(weights_only=True), on which every load here rests, is bypassable below 2.6


def check_torch_version(version: str = torch.__version__) -> None:
    """Refuse to run with a torch whose `weights_only` load can be bypassed (CVE-2025-32434, fixed in 2.6)."""
    found = tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:2])
    if found < MIN_TORCH:
        raise RuntimeError(
            f"torch {version} is installed, but this pipeline needs torch >= {'.'.join(map(str, MIN_TORCH))}: "
            f"below it torch.load(weights_only=True) can be made to run code (CVE-2025-32434), and every model "
            f"file is read that way. Upgrade: pip install 'torch>=2.6'"
        )


check_torch_version()

MAX_DECLARED_BYTES = 4 * 2**30  # the largest RobustBench CIFAR model (WRN-70-16) is about 1.1 GB
MAX_INFLATION = 16  # declared / stored bytes of a compressed entry (float weights deflate by about 1.1x)


class UnsafeModelFile(PipelineFileError):
    """A model file that torch must not read, or a program that must not run."""


def archive_handle(source: str | Path | bytes):
    """What `zipfile` reads a model file from: its path, or its bytes (a program stored inside a checkpoint)."""
    return io.BytesIO(source) if isinstance(source, bytes | bytearray) else source


def check_archive(source: str | Path | bytes, what: str, limit: int = MAX_DECLARED_BYTES) -> None:
    """Refuse a zip archive (checkpoint or TorchScript) whose entries declare more than `limit` bytes in all, or
    a compressed entry that declares more than MAX_INFLATION times its stored size. `what` names it in the error.
    A file that is not a zip archive (torch's legacy format) is left to torch."""
    handle = archive_handle(source)
    if not zipfile.is_zipfile(handle):
        return
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeModelFile(f"{what}: a damaged zip archive ({exc})") from None
    total = sum(e.file_size for e in entries)
    if total > limit:
        raise UnsafeModelFile(
            f"{what}: its entries declare {total / 2**30:.2f} GiB in all, more than the {limit / 2**30:.0f} GiB "
            f"a model file may hold; refused before loading"
        )
    for entry in entries:
        stored = max(entry.compress_size, 1)
        if entry.compress_type != zipfile.ZIP_STORED and entry.file_size > MAX_INFLATION * stored + 2**16:
            raise UnsafeModelFile(
                f"{what}: entry {entry.filename} declares {entry.file_size / 2**20:.1f} MiB from "
                f"{entry.compress_size / 2**10:.1f} kiB of compressed bytes (x{entry.file_size / stored:.0f}; "
                f"torch.save writes entries uncompressed): a decompression bomb, refused before loading"
            )


def archive_texts(source: str | Path | bytes, suffix: str = ".py") -> dict[str, str]:
    """The text entries of a zip archive ending in `suffix` (TorchScript's code/ directory)."""
    handle = archive_handle(source)
    with zipfile.ZipFile(handle) as archive:
        return {
            e.filename: archive.read(e).decode("utf-8", "replace")
            for e in archive.infolist()
            if e.filename.endswith(suffix)
        }


_RUNS_AT_LOAD = re.compile(r"^\s*def\s+__setstate__\s*\(", re.MULTILINE)


def check_torchscript_source(source: str | Path | bytes, what: str) -> None:
    """Before `torch.jit.load`: the archive's size limits, and no `__setstate__` in its code (a method that
    `torch.jit.load` runs while it reads the file, before any check of the loaded module could look)."""
    check_archive(source, what)
    try:
        texts = archive_texts(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeModelFile(f"{what}: not a TorchScript archive ({exc})") from None
    for name, text in texts.items():
        if _RUNS_AT_LOAD.search(text):
            raise UnsafeModelFile(
                f"{what}: {name} defines __setstate__, code that torch.jit.load would run while reading the "
                f"file; a classifier is refused if loading it runs code"
            )


# prim:: operations of tensor programs (control flow, constants, containers, attribute reads, type refinement);
# every other prim:: operation (Print, SetAttr, PythonOp, fork, calls left after inlining ...) is refused
ALLOWED_PRIM = frozenset(
    "prim::" + name
    for name in [
        "Constant",
        "GetAttr",
        "ListConstruct",
        "ListUnpack",
        "TupleConstruct",
        "TupleUnpack",
        "TupleIndex",
        "TupleSlice",
        "DictConstruct",
        "DictIndex",
        "If",
        "Loop",
        "NumToTensor",
        "ImplicitTensorToNum",
        "dtype",
        "device",
        "layout",
        "data",
        "requires_grad",
        "is_cuda",
        "is_cpu",
        "is_mps",
        "is_xpu",
        "is_meta",
        "is_sparse",
        "is_quantized",
        "shape",
        "unchecked_cast",
        "Uninitialized",
        "RaiseException",
        "isinstance",
        "min",
        "max",
        "abs",
        "AutogradZero",
        "EnumValue",
        "EnumName",
        "TypeCheck",
        "BailOut",
        "BailoutTemplate",
        "Guard",
    ]
)
# aten:: operations that reach outside the tensors: files and storages, printing, the global RNG state
DENIED_ATEN = frozenset(
    "aten::" + name
    for name in [
        "from_file",
        "save",
        "_print",
        "set_",
        "set_data",
        "manual_seed",
        "seed",
        "initial_seed",
        "get_rng_state",
        "set_rng_state",
        "sleep",
    ]
)


def _schema_text(node: torch._C.Node) -> str:
    try:
        return str(node.schema())
    except Exception:  # noqa: BLE001 (a node without a registered schema)
        return ""


def refused_operation(node: torch._C.Node) -> str | None:
    """Why `node` may not run in a classifier (None: it may)."""
    kind = node.kind()
    namespace = kind.split("::", 1)[0]
    if namespace == "prim":
        if kind in ALLOWED_PRIM:
            return None
        return "it changes the module's own state" if kind == "prim::SetAttr" else "not tensor arithmetic"
    if namespace != "aten":
        return f"an operation of the {namespace!r} namespace, not tensor arithmetic"
    if kind in DENIED_ATEN:
        return "it reaches files, storages, the console or the global random state"
    if "Storage" in _schema_text(node):
        return "it works on a raw storage"
    return None


def _nodes(block):
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _nodes(inner)


def _eval_graph(module: torch.jit.ScriptModule) -> tuple[torch._C.Graph, bool]:
    """The graph of `module.forward` as it runs in eval mode: frozen (every attribute that forward only reads
    folded into a constant, the branches of training mode gone, every call inlined), so that a prim::GetAttr left
    in it reads an attribute that forward changes. Where freezing fails, the inlined graph (and False)."""
    module.eval()
    try:
        return torch.jit.freeze(module).forward.graph, True
    except Exception:  # noqa: BLE001 (freezing is an optimisation pass; some modules do not take it)
        graph = module.forward.graph.copy()
        torch._C._jit_pass_inline(graph)
        return graph, False


def check_torchscript_ops(module: torch.jit.ScriptModule, what: str) -> None:
    """Refuse a TorchScript module whose `forward` in eval mode (every method and function it calls inlined,
    the top module's hooks too) holds an operation outside tensor arithmetic or changes the module's own
    attributes (a call counter, a flag), naming the first such operation and where it comes from."""
    if not hasattr(module, "forward") or not hasattr(module.forward, "graph"):
        raise UnsafeModelFile(f"{what}: a TorchScript module without a compiled forward")
    graph, frozen = _eval_graph(module)
    # the hooks of submodules are inlined into forward; the top module's own hooks run around it
    hooks = [*module._c._get_forward_pre_hooks(), *module._c._get_forward_hooks()]
    parts = [("forward", graph)]
    for hook in hooks:
        hook_graph = hook.graph.copy()
        torch._C._jit_pass_inline(hook_graph)
        parts.append((f"hook {hook.name}", hook_graph))
    for part, part_graph in parts:
        for node in _nodes(part_graph):
            reason = refused_operation(node)
            if reason is None and frozen and part == "forward" and node.kind() == "prim::GetAttr":
                reason = (
                    f"it reads attribute {node.s('name')!r}, which forward itself changes (its output would depend "
                    f"on how often it was called)"
                )
            if reason is not None:
                source = node.sourceRange().strip().splitlines()
                where = f" (at: {source[0].strip()[:120]})" if source else ""
                raise UnsafeModelFile(
                    f"{what}: its {part} calls {node.kind()}: {reason}{where}; a classifier may only "
                    f"compute on tensors, so it is refused"
                )


def load_torchscript(source: str | Path | bytes, what: str) -> torch.jit.ScriptModule:
    """A TorchScript module, read only after `check_torchscript_source` and kept only after
    `check_torchscript_ops`."""
    check_torchscript_source(source, what)
    handle = io.BytesIO(source) if isinstance(source, bytes | bytearray) else str(source)
    try:
        module = torch.jit.load(handle, map_location="cpu")
    except Exception as exc:
        raise PipelineFileError(
            f"{what}: not a TorchScript file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    check_torchscript_ops(module, what)
    return module


def safe_torch_load(path: str | Path, what: str | None = None, map_location="cpu"):
    """`torch.load(path, weights_only=True)` after `check_archive`."""
    check_archive(path, what or str(path))
    return torch.load(path, map_location=map_location, weights_only=True)
