"""Dry-run one workflow directory under many configs in one process (Snakemake's Python API), printing
{config file: [rules of the jobs that would run]} as JSON. A Snakemake process per config would spend
most of its time importing; this takes a fraction of a second per config. With --threads first, it prints
{config file: {rule: [threads of each of its jobs]}} for every job of the DAG (on 64 cores, so that no
rule's threads are capped by the cores).

    python dryrun_probe.py [--threads] SNAKEFILE WORKDIR CONFIG [CONFIG ...]
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


def scheduled_rules(snakefile: Path, workdir: Path, configfile: Path, threads: bool = False):
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=64 if threads else 1, resources={"gpu": 1}),
            config_settings=ConfigSettings(configfiles=[configfile]),
            storage_settings=StorageSettings(),
            workflow_settings=WorkflowSettings(),
            snakefile=snakefile,
            workdir=workdir,
        )
        workflow.dag(DAGSettings()).execute_workflow(pseudo_executor="dryrun")
        jobs = workflow._workflow.dag.needrun_jobs(exclude_finished=False)
        if not threads:
            return sorted(job.rule.name for job in jobs)
        per_rule: dict[str, list[int]] = {}
        for job in jobs:
            per_rule.setdefault(job.rule.name, []).append(job.threads)
        return per_rule


def main(argv: list[str]) -> None:
    threads = argv[:1] == ["--threads"]
    argv = argv[1:] if threads else argv
    snakefile, workdir, configs = Path(argv[0]), Path(argv[1]), [Path(c) for c in argv[2:]]
    out = {}
    for configfile in configs:
        try:
            out[str(configfile)] = scheduled_rules(snakefile, workdir, configfile, threads)
        except Exception as exc:  # a config the workflow refuses: reported, not fatal for the others
            out[str(configfile)] = f"error: {type(exc).__name__}: {exc}"
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
