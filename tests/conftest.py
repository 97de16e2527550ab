"""Shared fixtures: repository paths, the mini CIFAR-10 from ../shared, and one smoke DAG run."""

from __future__ import annotations

import copy
import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

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
    workdir: Path,
    configfile: Path,
    *args: str,
    targets: tuple[str, ...] = (),
    timeout: int = 2700,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run the project's Snakefile with `workdir` as working directory (targets go before --configfile,
    which takes several files). Two GPU tokens: on this CPU-only machine the token stands for no device, and the
    smoke config's one-thread jobs then run two at a time on the 2 cores instead of one after the other."""
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
        "gpu=2",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


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


def pytest_configure(config):
    """Under pytest-xdist: one thread for torch in each worker (and the processes it starts), so that the two
    workers share the 2 cores instead of four threads spinning on them. Snakemake jobs set their rule's threads."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test`: two workers), an order that keeps both cores busy: the SLURM test first
    (its worker runs the smoke DAG while the cluster's jobs, mostly waiting, run beside it), then the tests that
    do not need the smoke DAG (the other worker runs them meanwhile), then the ones that read it. A plain `pytest`
    keeps the collection order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return

    def rank(item) -> int:
        if item.path.name == "test_slurm.py":
            return 0
        return 2 if "smoke_run" in item.fixturenames else 1

    items.sort(key=rank)  # stable: the collection order within each rank


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """Run the whole smoke DAG once (synthetic data, CPU); returns its working directory (`shared_smoke_run`)."""
    return shared_smoke_run(tmp_path_factory)


_SMOKE_DONE: dict[Path, Path] = {}  # without xdist: the session's smoke run, by its base folder
_SMOKE_LOCK = threading.Lock()


def shared_smoke_run(tmp_path_factory) -> Path:
    """The session's smoke DAG, run once. Under pytest-xdist (`make test` runs two workers) the first worker that
    needs it runs it, under a file lock in the session's shared temporary folder, and the other worker waits for
    it and reads the same directory: the DAG runs once per session, not once per worker. Callable from a thread
    (the SLURM test runs it while its cluster jobs wait). A developer iterating may set ADVDEFENSE_SMOKE_DIR to the
    directory of an earlier smoke run: Snakemake then re-runs there only what changed since (CI never sets it)."""
    reuse = os.environ.get("ADVDEFENSE_SMOKE_DIR")
    if reuse:
        with _SMOKE_LOCK:
            return _run_smoke_dag(Path(reuse))
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        base = tmp_path_factory.getbasetemp()
        with _SMOKE_LOCK:
            if base not in _SMOKE_DONE:
                _SMOKE_DONE[base] = _run_smoke_dag(tmp_path_factory.mktemp("smoke"))
            return _SMOKE_DONE[base]
    shared = tmp_path_factory.getbasetemp().parent  # one folder for all workers of this session
    workdir, failed = shared / "smoke", shared / "smoke.failed"
    with open(shared / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this worker dies
        if failed.exists():
            pytest.fail(failed.read_text())
        if not (workdir / "smoke.done").exists():
            workdir.mkdir(exist_ok=True)
            try:
                _run_smoke_dag(workdir)
            except pytest.fail.Exception as e:
                failed.write_text(str(e))  # the other worker reports the same failure, not a second run
                raise
            (workdir / "smoke.done").write_text("")
    return workdir


def _run_smoke_dag(workdir: Path) -> Path:
    configfile = workdir / "smoke.yaml"
    shutil.copy(REPO / "config" / "smoke.yaml", configfile)
    proc = run_snakemake(workdir, configfile)
    if proc.returncode != 0:
        logs = "\n".join(
            f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log"))
        )
        pytest.fail(f"smoke DAG failed:\n{proc.stderr[-6000:]}\n{logs}")
    return workdir
