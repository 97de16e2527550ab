"""The smoke DAG through a real one-node SLURM cluster with the project's SLURM profile.

Needs root (the cluster is installed and started by ../shared/slurm/start_local_slurm.sh);
skipped otherwise. `.ci/run` runs as root, so CI runs it.
"""

import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, SNAKEMAKE, shared_smoke_run

pytestmark = pytest.mark.slow
SLURM_DIR = REPO.parent / "shared/slurm"
D = "synthetic-smoke"


def _start_cluster(env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SLURM_DIR / "start_local_slurm.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def _stop_cluster(*flags) -> None:
    subprocess.run(
        ["bash", str(SLURM_DIR / "stop_local_slurm.sh"), *flags], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def slurm_cluster():
    """A started one-node cluster. The controller restores jobs from its saved state: jobs left over from an
    earlier, killed run can hold the node ("node allocated", then `srun hostname` revoked). Then the cluster
    is stopped, its state purged, and it is started once more; the test purges the state it leaves too."""
    if os.geteuid() != 0:
        pytest.skip("starting the local SLURM cluster needs root")
    if not (SLURM_DIR / "start_local_slurm.sh").is_file():
        pytest.skip(f"no SLURM start script at {SLURM_DIR}")
    # two GPU GRES on the node: two GPU jobs at a time, as the local smoke run (`--resources gpu=2`)
    env = {**os.environ, "FAKE_GPUS": "2", "PARTITION": "debug"}
    start = _start_cluster(env)
    if "SLURM_READY" not in start.stdout:
        first = f"{start.stdout[-1500:]}\n{start.stderr[-1500:]}"
        _stop_cluster("--purge")
        start = _start_cluster(env)
        if "SLURM_READY" not in start.stdout:
            pytest.fail(
                f"SLURM did not start, twice (the second time from a purged state):\nfirst:\n{first}\n"
                f"second:\n{start.stdout[-3000:]}\n{start.stderr[-3000:]}"
            )
    yield
    _stop_cluster("--purge")


GPU_RULES = {
    "train_classifier",
    "attack",
    "train_flow",
    "import_flow",
    "latents_clean",
    "latents_attack",
    "train_autoencoder",
    "purify_attack",
    "purify_clean",
    "adaptive_attack",
    "detect",
}


def _rule_of(log) -> dict:
    return {"rule": re.search(r"rule\.(\w+) INFO", log.read_text()).group(1)}


def slurm_requests(logs) -> list[dict]:
    """For each job log: its rule, the threads Snakemake gave it, and the CPUs and GPUs of its SLURM job
    (`scontrol show job`; finished jobs stay visible for MinJobAge)."""
    out = []
    for log in logs:
        text = log.read_text()
        rule, job, threads = re.search(
            r"rule\.(\w+) INFO: host \S+, slurm job id (\d+), threads (\d+)", text
        ).groups()
        info = subprocess.run(
            ["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=60
        ).stdout
        cpus = re.search(r"CPUs/Task=(\d+)", info) or re.search(r"NumCPUs=(\d+)", info)
        gpus = re.search(r"gres[:/]gpu[:=](\d+)", info)  # e.g. TresPerJob=gres:gpu:1 for --gpus=1
        array = re.search(
            r"ArrayJobId=(\d+) ArrayTaskId=(\d+)", info
        )  # a task of an array job (sbatch --array)
        assert cpus, f"scontrol show job {job}: {info[:500]}"
        out.append(
            {
                "rule": rule,
                "job": job,
                "threads": int(threads),
                "cpus": int(cpus.group(1)),
                "gpus": int(gpus.group(1)) if gpus else 0,
                "array": array.groups() if array else None,
            }
        )
    return out


def _test_profile(tmp_path):
    """profiles/slurm with its documented placeholders filled in for the local cluster."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "debug"
    profile["default-resources"].pop("slurm_account", None)  # the local cluster has no accounts
    profile["latency-wait"] = 10
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["seconds-between-status-checks"] = 3  # 38 short jobs: poll more often than the default 10 s
    target = tmp_path / "profile"
    target.mkdir()
    (target / "config.yaml").write_text(yaml.safe_dump(profile))
    return target


# A part of the smoke DAG with a job of every rule that asks for a GPU: 12 jobs. Each SLURM job pays about 30 s
# for its Snakemake start and the status polling: the whole DAG took 20 minutes of the CI's 2 cores, 18 jobs 12
# minutes. The node has two (fake) GPUs, as the local smoke run has `--resources gpu=2`, so two one-core jobs run
# side by side: 127 s for the 12 jobs against 221 s with one GPU (one at a time), on the machine alone. The detectors learn PGD alone
# here (`detection.attacks: [pgd]`), so the detection job needs 2 attack jobs, not 8; no job upstream of it reads
# that key, so every file is still the local run's, bit for bit.
TARGETS = [
    f"results/detection/{D}/offgrid/evaluation.csv",
    f"results/purified/{D}/autoencoder/pgd/eps0.03/test.h5",
    f"results/purified/{D}/autoencoder/clean/test.h5",
    f"results/adaptive/{D}/autoencoder/pgd/eps0.03/test.h5",
    f"results/latents/{D}/pgd/eps0.03/test.h5",
    f"results/latents/{D}/clean/test.h5",
]


def test_smoke_dag_on_slurm_equals_local_run(slurm_cluster, tmp_path_factory, tmp_path):
    # the local smoke run, to compare with, runs meanwhile: the cluster's jobs mostly wait (submission, polling,
    # each job's start), so the two share the cores with little loss (CI minutes)
    with ThreadPoolExecutor(1) as pool:
        local = pool.submit(shared_smoke_run, tmp_path_factory)
        workdir, seconds, proc = _slurm_run(tmp_path)
        smoke_run = local.result()
    assert proc.returncode == 0, f"SLURM run failed after {seconds:.0f} s:\n{proc.stderr[-5000:]}"
    print(f"\nsmoke DAG through SLURM: {seconds:.0f} s")
    _check_slurm_run(workdir, smoke_run, tmp_path)


def _slurm_run(tmp_path):
    workdir = tmp_path / "slurm-run"
    workdir.mkdir()
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    cfg["detection"]["attacks"] = ["pgd"]
    cfg["corruptions"]["names"] = None  # the targets' detect jobs would wait for the corruption files
    (workdir / "smoke.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [
        "timeout",
        "-s",
        "KILL",
        "1800",
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *TARGETS,
        "--configfile",
        str(workdir / "smoke.yaml"),
        "--profile",
        str(_test_profile(tmp_path)),
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return workdir, time.monotonic() - t0, proc


def _check_slurm_run(workdir, smoke_run, tmp_path):
    """The SLURM run's jobs, their requests, and their results against the local run's."""
    # every job ran as a SLURM batch job: its log names the SLURM job id it ran under
    logs = sorted((workdir / "logs").rglob("*.log"))
    local_logs = sorted((smoke_run / "logs").rglob("*.log"))
    assert len(logs) == 12 and {p.relative_to(workdir) for p in logs} <= {
        p.relative_to(smoke_run) for p in local_logs
    }
    assert {r["rule"] for r in map(_rule_of, logs)} >= GPU_RULES - {
        "import_flow"
    }  # no flow is imported in smoke
    job_ids = set()
    for log in logs:
        match = re.search(r"slurm job id (\d+)", log.read_text())
        assert match, f"{log} did not run inside a SLURM job"
        job_ids.add(match.group(1))
    assert len(job_ids) == len(logs)  # one SLURM job per Snakemake job
    for log in local_logs:
        assert "slurm job id none" in log.read_text()

    # what each job asked SLURM for: its rule's threads as CPUs, a GPU exactly for the rules that declare one
    requests = slurm_requests(logs)
    table = "\n".join(
        f"{r['rule']:<20} job {r['job']:>4}: {r['cpus']} CPU(s), {r['gpus']} GPU(s)"
        + (f", task {r['array'][1]} of array job {r['array'][0]}" if r["array"] else "")
        for r in requests
    )
    (tmp_path / "slurm_requests.txt").write_text(table + "\n")  # kept by pytest for a look afterwards
    print(table)
    for r in requests:
        assert r["cpus"] == r["threads"], r
        assert r["gpus"] == (1 if r["rule"] in GPU_RULES else 0), r
    # the profile's `slurm-array-jobs`: the attack jobs (PGD on train and on test), ready together, went to SLURM
    # as the tasks of one array job; every other job as a plain one
    arrays = {r["rule"]: r["array"] for r in requests if r["array"]}
    attack_tasks = [r["array"] for r in requests if r["rule"] == "attack"]
    assert len(attack_tasks) == 2 and all(attack_tasks), requests
    assert len({job for job, _ in attack_tasks}) == 1 and sorted(t for _, t in attack_tasks) == ["1", "2"]
    assert set(arrays) == {"attack"}, arrays
    by_rule = {r["rule"]: r for r in requests}
    assert (
        by_rule["dataset"]["cpus"] == 1 and by_rule["train_classifier"]["cpus"] == 2
    )  # not one value for all

    # and it computed the same results as the local run
    table = f"results/classifier/{D}/metrics.json"
    ours, theirs = (json.loads((d / table).read_text()) for d in (workdir, smoke_run))
    assert ours["test_accuracy"] == theirs["test_accuracy"], table
    # the detector of PGD: the same rows as the local run's detector of PGD (tested on PGD and the noise controls)
    table = f"results/detection/{D}/offgrid/evaluation.csv"
    ours, theirs = (pd.read_csv(d / table) for d in (workdir, smoke_run))
    assert "pgd_eps0.03" in set(ours["train"]) and not set(ours["train"]) - {"pgd_eps0.03", "overall"}
    rows = ours[(ours["train"] == "pgd_eps0.03") & (ours["test"] != "overall")].reset_index(
        drop=True
    )  # overall: PGD alone here
    assert {"pgd_eps0.03", "noise_sign_eps0.03"} <= set(rows["test"])
    local = theirs.set_index(["train", "test", "set"]).loc[
        [tuple(k) for k in rows[["train", "test", "set"]].values]
    ]
    pd.testing.assert_frame_equal(rows, local.reset_index()[rows.columns])
    import h5py

    for rel in (
        f"results/attacks/{D}/pgd/eps0.03/test.h5",
        f"results/latents/{D}/clean/test.h5",
        f"results/purified/{D}/autoencoder/pgd/eps0.03/test.h5",
        f"results/adaptive/{D}/autoencoder/pgd/eps0.03/test.h5",
    ):
        with h5py.File(workdir / rel, "r") as a, h5py.File(smoke_run / rel, "r") as b:
            keys = sorted(k for k in a if isinstance(a[k], h5py.Dataset))
            assert keys and keys == sorted(k for k in b if isinstance(b[k], h5py.Dataset)), rel
            for key in keys:
                assert np.array_equal(a[key][()], b[key][()]), f"{rel}:{key}"
