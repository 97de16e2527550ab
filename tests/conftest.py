"""Shared fixtures: repository paths, the mini CIFAR-10 from ../shared, and one smoke DAG run."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advdefense.plan.decisions import attack_settings

REPO = Path(__file__).resolve().parents[1]
MINI_CIFAR = Path(
    os.environ.get("ADVDEFENSE_MINI_CIFAR", REPO.parent / "shared/data/cifar-10-mini/cifar-10-batches-py")
)
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def load_config(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.fixture
def smoke_config() -> dict:
    """The smoke config as written (not yet validated); tests mutate their own copy."""
    return copy.deepcopy(load_config("smoke.yaml"))


@pytest.fixture(scope="session")
def mini_cifar() -> Path:
    if not (MINI_CIFAR / "data_batch_1").is_file():
        pytest.skip(
            f"mini CIFAR-10 not found at {MINI_CIFAR} (../shared/data/cifar-10-mini is provided beside the checkout)"
        )
    return MINI_CIFAR


def run_snakemake(
    workdir: Path, configfile: Path, *args: str, targets: tuple[str, ...] = (), timeout: int = 2700
) -> subprocess.CompletedProcess:
    """Run the project's Snakefile with `workdir` as working directory (targets go before --configfile,
    which takes several files)."""
    cmd = [
        str(SNAKEMAKE),
        *targets,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count} (total excluded)."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table, counts = True, {}
            continue
        if in_table:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    counts[parts[0]] = int(parts[1])
                else:
                    in_table = False
    return counts


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """Run the whole smoke DAG once (synthetic data, CPU); returns its working directory. A developer iterating
    may set ADVDEFENSE_SMOKE_DIR to the directory of an earlier smoke run: Snakemake then re-runs there only
    what changed since (CI never sets it)."""
    reuse = os.environ.get("ADVDEFENSE_SMOKE_DIR")
    workdir = Path(reuse) if reuse else tmp_path_factory.mktemp("smoke")
    configfile = workdir / "smoke.yaml"
    shutil.copy(REPO / "config" / "smoke.yaml", configfile)
    proc = run_snakemake(workdir, configfile)
    if proc.returncode != 0:
        logs = "\n".join(
            f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log"))
        )
        pytest.fail(f"smoke DAG failed:\n{proc.stderr[-6000:]}\n{logs}")
    return workdir


def attack_job(cfg: dict, name: str, eps: float, split: str) -> dict:
    """The keyword arguments the `attack` rule gives `generate_attack_file` for attack `name` at `eps`
    under the validated config `cfg` (its params, and the runtime settings the job reads)."""
    return {
        "name": name,
        "spec": attack_settings(copy.deepcopy(cfg["attacks"][name])),
        "eps": eps,
        "split": split,
        "images": cfg["attack_defaults"]["images"][split],
        "seed": cfg["seed"],
        "device": cfg["device"],
        "batch_size": cfg["attack_defaults"]["batch_size"],
    }
