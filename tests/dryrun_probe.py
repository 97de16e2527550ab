"""Dry-run one workflow directory under many configs in one process (Snakemake's Python API), printing
{config file: [[rule, threads] of each job that would run, sorted]} as JSON, or {config file: "error: ..."}
where the workflow refuses the config. A Snakemake process per config would spend most of its time
importing; this takes a fraction of a second per config. The DAG is built for 64 cores, so that no rule's
threads are capped by the cores.

    python dryrun_probe.py SNAKEFILE WORKDIR CONFIG [CONFIG ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import (
    ConfigSettings,
    DAGSettings,
    OutputSettings,
    Quietness,
    ResourceSettings,
    StorageSettings,
    WorkflowSettings,
)


def scheduled_jobs(snakefile: Path, workdir: Path, configfile: Path) -> list[tuple[str, int]]:
    """(rule, threads) of every job the dry run would execute, sorted."""
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=64, resources={"gpu": 1}),
            config_settings=ConfigSettings(configfiles=[configfile]),
            storage_settings=StorageSettings(),
            workflow_settings=WorkflowSettings(),
            snakefile=snakefile,
            workdir=workdir,
        )
        workflow.dag(DAGSettings()).execute_workflow(pseudo_executor="dryrun")
        jobs = workflow._workflow.dag.needrun_jobs(exclude_finished=False)
        return sorted((job.rule.name, job.threads) for job in jobs)


def main(argv: list[str]) -> None:
    snakefile, workdir, configs = Path(argv[0]), Path(argv[1]), [Path(c) for c in argv[2:]]
    out = {}
    for configfile in configs:
        try:
            out[str(configfile)] = scheduled_jobs(snakefile, workdir, configfile)
        except Exception as exc:  # a config the workflow refuses: reported, not fatal for the others
            out[str(configfile)] = f"error: {type(exc).__name__}: {exc}"
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
