"""The Snakemake-job runner: what every script in workflow/scripts does around its one library call.

`run_script(snakemake, main)` logs to the rule's log file (host, SLURM job id, threads, which
`advdefense` was imported), sets torch's threads to the rule's, keeps freed memory for reuse, and logs a
failure with its traceback. A script passes its rule's `input`, `params` and `output` to the library;
runtime-only settings (device, evaluation batch sizes) come from `runtime_setting`.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .plan.names import is_runtime_key


def setup_logging(log_path: str | Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the kernel.

    A training or attack step allocates and frees the same multi-megabyte activations every step.
    By default glibc serves such blocks with fresh mmaps or trims them off the heap once freed, so
    every step page-faults (and zeroes) them anew: about 4600 page faults per ResNet-20 training
    step of 128 images on the CPU (measured: 138 504 in 30 steps; about none with this setting).
    With both thresholds raised, freed blocks are reused; the process keeps its high-water mark,
    which it reaches every step anyway. Returns whether the settings were applied (only with
    glibc; elsewhere this does nothing)."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_threshold, threshold_bytes)) and bool(
        libc.mallopt(m_trim_threshold, threshold_bytes)
    )


def runtime_setting(smk: Any, key: str) -> Any:
    """A runtime-only config value (`plan.names.RUNTIME_KEYS`, e.g. 'device' or 'latents.batch_size') for the
    job. Settings that change results are not read here: they reach the job through its rule's params, so
    that Snakemake re-runs the job when they change."""
    if not is_runtime_key(key):
        raise KeyError(f"{key} changes results: pass it through the rule's params, not the config")
    value = smk.config
    for part in key.split("."):
        value = value[part]
    return value


def run_script(smk: Any, main: Callable[[Any], Any]) -> None:
    """Run `main(snakemake)` with logging to `snakemake.log[0]`; a failure is logged with its traceback."""
    setup_logging(smk.log[0] if len(smk.log) else None)
    logger = logging.getLogger(f"rule.{smk.rule}")
    if "torch" in sys.modules:  # a stage that computes with torch (tables and figures run without it)
        sys.modules["torch"].set_num_threads(max(1, int(smk.threads)))
    logger.info("advdefense %s from %s", __version__, Path(__file__).resolve().parent)
    if keep_freed_memory():
        logger.info("glibc malloc keeps freed memory for reuse (no page faults per step)")
    # where the job ran: SLURM sets SLURM_JOB_ID in every batch job (the cluster test relies on this line)
    logger.info(
        "host %s, slurm job id %s, threads %s",
        platform.node(),
        os.environ.get("SLURM_JOB_ID", "none"),
        smk.threads,
    )
    try:
        main(smk)
    except Exception as exc:
        logger.error("%s failed: %s: %s\n%s", smk.rule, type(exc).__name__, exc, traceback.format_exc())
        raise
