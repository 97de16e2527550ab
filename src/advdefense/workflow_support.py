"""Glue for the thin scripts in workflow/scripts: log to the rule's log file, record failures."""
from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any, Callable


def setup_logging(log_path: str | Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        handlers=handlers, force=True)


def run_script(smk: Any, main: Callable[[Any], Any]) -> None:
    """Run `main(snakemake)` with logging to `snakemake.log[0]`; a failure is logged with its traceback."""
    import os
    import platform

    setup_logging(smk.log[0] if len(smk.log) else None)
    logger = logging.getLogger(f"rule.{smk.rule}")
    # where the job ran: SLURM sets SLURM_JOB_ID in every batch job (the cluster test relies on this line)
    logger.info("host %s, slurm job id %s, threads %s", platform.node(), os.environ.get("SLURM_JOB_ID", "none"),
                smk.threads)
    try:
        main(smk)
    except Exception as exc:
        logger.error("%s failed: %s: %s\n%s", smk.rule, type(exc).__name__, exc, traceback.format_exc())
        raise
