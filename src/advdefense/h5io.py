"""Small I/O helpers shared by every stage: atomic writes, file hashes, versions."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import platform
import re
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py

from .errors import PipelineFileError
from .plan.names import file_sha256

log = logging.getLogger(__name__)


TMP_MARK = ".tmp-"


def _temporary_name(path: Path) -> Path:
    """`<name>.tmp-<host>-<pid>`: the writer's host and process, so a later job can tell a dead
    writer's leftover from a live writer's file (on a shared cluster file system too)."""
    host = re.sub(r"[^A-Za-z0-9_.]", "_", platform.node()) or "host"
    return path.with_name(f"{path.name}{TMP_MARK}{host}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries of `path` left by writers that died on this host (a killed job), and
    those of the naming before the host was part of it (`<name>.tmp-<pid>`) whose process is gone.
    A live writer's temporary, or one written on another host, is left alone. Returns what was removed."""
    path = Path(path)
    host = re.sub(r"[^A-Za-z0-9_.]", "_", platform.node()) or "host"
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f"{glob.escape(path.name)}{TMP_MARK}*"):
        tail = tmp.name[len(path.name) + len(TMP_MARK) :]
        owner, _, pid = tail.rpartition("-") if "-" in tail else (host, "", tail)
        if not pid.isdigit() or owner != host or _pid_alive(int(pid)):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
        log.warning("removed %s, left behind by a writer that no longer runs (process %s)", tmp, pid)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A crash or exception leaves no half-written file under the final name; the temporaries that a
    killed writer could not remove are removed by the next writer of the same file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_h5(path: str | Path) -> Iterator[h5py.File]:
    """An HDF5 file opened for writing that appears under `path` only when complete."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=True) as f:
        yield f


def write_json(path: str | Path, obj: Any, sort_keys: bool = True) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n")


def provenance_attrs(**files: str | Path) -> dict[str, str]:
    """The provenance attributes of an output file: library versions (JSON) and the sha256 of each
    named input, e.g. ``provenance_attrs(classifier=path)`` -> {"versions": ..., "classifier_sha256": ...}."""
    attrs = {"versions": json.dumps(library_versions(), sort_keys=True)}
    attrs.update({f"{name}_sha256": file_sha256(path) for name, path in files.items()})
    return attrs


def library_versions() -> dict[str, str]:
    import numpy
    import torch

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
    }
    try:
        import foolbox

        versions["foolbox"] = foolbox.__version__
    except ImportError:
        pass
    # AutoAttack's package (RobustBench's model_info entries name the AutoAttack that ran)
    with contextlib.suppress(metadata.PackageNotFoundError):
        versions["pyautoattack"] = metadata.version("pyautoattack")
    return versions


@contextlib.contextmanager
def open_h5(path: str | Path, what: str = "HDF5") -> Iterator[h5py.File]:
    """Open a pipeline HDF5 file for reading. A missing, truncated or corrupt file, or a read that
    fails inside the block, raises PipelineFileError naming the file (h5py's own messages do not)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineFileError(f"{what} file {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise PipelineFileError(
            f"{path}: cannot be read as an HDF5 file, truncated or corrupt? ({exc})"
        ) from exc
    try:
        with f:
            yield f
    except OSError as exc:
        raise PipelineFileError(f"{path}: read failed, truncated or corrupt? ({exc})") from exc


@contextlib.contextmanager
def open_pipeline_file(
    path: str | Path, fmt: str, what: str, require, error: type[PipelineFileError] = PipelineFileError
) -> Iterator[h5py.File]:
    """Open a pipeline HDF5 file of `what` kind for reading (`open_h5`): it must carry the `format` attribute
    `fmt` and the datasets `require` (or `require(attrs)`, where they depend on its attributes: its kind), all of
    one length; else `error` naming the file. The one check of every file kind's reader."""
    with open_h5(path, what) as f:
        if f.attrs.get("format") != fmt:
            raise error(
                f"{path}: not {_article(what)} {what} file of this pipeline (format {f.attrs.get('format')!r})"
            )
        if callable(require):
            require = require(f.attrs)
        missing = [k for k in require if k not in f]
        if missing:
            raise error(
                f"{path}: missing dataset(s) {', '.join(missing)} (written by an older version, or not whole: "
                "delete it to have it made again)"
            )
        lengths = {k: len(f[k]) for k in require}
        if len(set(lengths.values())) > 1:
            raise error(f"{path}: datasets differ in length ({lengths})")
        yield f


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
