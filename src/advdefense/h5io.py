"""Small I/O helpers shared by every stage: atomic writes, file hashes, versions."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any, Iterator

import h5py


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or exception leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """An HDF5 file opened for writing that appears under `path` only when complete."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            yield f


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import numpy
    import torch

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": numpy.__version__, "h5py": h5py.__version__}
    try:
        import foolbox

        versions["foolbox"] = foolbox.__version__
    except ImportError:
        pass
    return versions


def read_h5(path: str | Path, fmt: str, what: str, skip: tuple[str, ...] = ()) -> dict:
    """All top-level datasets (except `skip`) and the attributes ('attrs') of a pipeline HDF5 file,
    after checking that it exists and carries the expected `format` attribute."""
    from .config import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != fmt:
            raise ConfigError(f"{path}: not a {what} file of this pipeline (format {f.attrs.get('format')!r})")
        out = {k: f[k][()] for k in f if k not in skip}
        out["attrs"] = dict(f.attrs)
    return out
