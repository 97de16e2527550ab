"""Attack families as a registry (issue 42): Foolbox and AutoAttack are two built-in families; a third is one
plug-in file (a class registered with `advdefense.attack_methods.register`), and with no other edit it runs as an
attack job, appears in the attack summary and is priced by the estimate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from advdefense.attack_methods import REGISTRY, AutoAttackMethod, FoolboxMethod
from advdefense.config import ConfigError, validate_config
from advdefense.plan.attack_specs import ATTACK_FAMILIES, attack_family
from conftest import REPO, run_snakemake

PLUG_IN = '''
import torch

from advdefense.attack_methods import AttackFamily, register


@register
class RandomSign(AttackFamily):
    """Random sign noise of size eps, the best of a few draws per image: a gradient-free control."""

    name = "random_sign"
    title = "Random sign noise at eps (a gradient-free control)"
    classes = ("RandomSign",)
    passes = 2
    params = ("tries",)
    norms = ("linf",)

    def attack(self, x, y, seed):
        generator = torch.Generator().manual_seed(seed)
        best = x.clone()
        for _ in range(int(self.params.get("tries", 3))):
            sign = torch.randint(0, 2, x.shape, generator=generator).to(x) * 2 - 1
            candidate = (x + self.eps * sign).clamp(0, 1)
            with torch.no_grad():
                fooled = self.net(candidate).argmax(1) != y
            best[fooled] = candidate[fooled]
        return best
'''

ESTIMATE = """
import json
from advdefense.estimate import attack_passes
from advdefense.plan.attack_specs import attack_family
spec = {"class": "RandomSign", "norm": "linf", "params": {"tries": 4}}
print(json.dumps({"family": attack_family(spec).name, "passes": attack_passes(spec),
                  "restarted": attack_passes({**spec, "restarts": 3})}))
"""


def test_the_built_in_families_are_foolbox_and_autoattack():
    assert REGISTRY["foolbox"] is FoolboxMethod and REGISTRY["autoattack"] is AutoAttackMethod
    assert (
        attack_family({"class": "AutoAttack"}).model_info and not attack_family({"class": "FGSM"}).model_info
    )
    assert attack_family({"class": "LinfPGD"}).name == "foolbox"
    assert set(ATTACK_FAMILIES) >= {"foolbox", "autoattack"}


def test_an_attack_family_in_one_file_runs_is_summarised_and_priced(smoke_run, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "random_sign.py").write_text(textwrap.dedent(PLUG_IN))
    env = {**os.environ, "ADVDEFENSE_PLUGINS": str(plugins)}
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    cfg["attacks"] = {
        "sign": {
            "class": "RandomSign",
            "norm": "linf",
            "epsilons": [0.03],
            "params": {"tries": 2},
            "splits": ["test"],
        }
    }
    cfg["attack_defaults"]["images"] = {"train": 100, "test": 100}
    cfg["latents"]["enabled"] = False
    cfg["detection"]["enabled"] = False
    cfg["purification"] = {"enabled": False}
    cfg["corruptions"]["names"] = None
    cfg["tables"] = {}
    configfile = tmp_path / "sign.yaml"
    configfile.write_text(yaml.safe_dump(cfg))

    # the estimate prices it from its file's declaration (2 passes a run; restarts on the images left)
    proc = subprocess.run([sys.executable, "-c", ESTIMATE], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"family": "random_sign", "passes": 2.0, "restarted": 4.0}

    # its attack job and the summary, on a copy of the smoke run's data and classifier
    work = tmp_path / "run"
    for rel in ("results/data/synthetic-smoke.h5", "results/classifier/synthetic-smoke/model.pt"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(smoke_run / rel, work / rel)
    summary = "results/attacks/synthetic-smoke/summary.csv"
    proc = run_snakemake(work, configfile, targets=(summary,), env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with h5py.File(work / "results/attacks/synthetic-smoke/sign/eps0.03/test.h5") as f:
        linf, adv = f["linf"][()], f["adv"][()]
    assert linf.max() <= 0.03 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    row = pd.read_csv(work / summary).iloc[0]
    assert row["attack"] == "sign" and row["epsilon"] == 0.03
    assert 0 <= row["success_rate"] < 1 and np.isfinite(row["robust_accuracy"])

    # without its file (this process has no $ADVDEFENSE_PLUGINS) the class is unknown, named in the error
    with pytest.raises(ConfigError, match="'RandomSign' is neither a class of an attack family"):
        validate_config(yaml.safe_load(configfile.read_text()))


def test_a_plug_in_family_checks_its_declared_parameters_and_norms(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "random_sign.py").write_text(textwrap.dedent(PLUG_IN))
    check = f"""
import yaml
from advdefense.config import validate_config
cfg = yaml.safe_load(open({str(REPO / "config/smoke.yaml")!r}))
cfg["tables"] = {{}}
for attack, error in (({{"params": {{"steps": 3}}}}, "params: steps not accepted by RandomSign"),
                      ({{"norm": "l2"}}, "norm: RandomSign (attack family random_sign) bounds linf, not 'l2'")):
    cfg["attacks"] = {{"sign": {{"class": "RandomSign", "norm": "linf", "epsilons": [0.03], **attack}}}}
    try:
        validate_config(cfg)
    except Exception as exc:
        assert error in str(exc), str(exc)
    else:
        raise SystemExit("accepted")
print("ok")
"""
    proc = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True,
        env={**os.environ, "ADVDEFENSE_PLUGINS": str(plugins)},
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:] + proc.stdout


def test_an_attack_that_leaves_the_threat_model_is_refused():
    import torch

    from advdefense.attacks import check_within_budget

    x = torch.rand(4, 3, 32, 32) * 0.5
    check_within_budget(x + 0.03, x, "linf", 0.03, "ok", 0)  # at the budget: float32 rounding allowed
    with pytest.raises(
        RuntimeError, match=r"returned an adversarial linf 0.05 from image 12, beyond eps 0.03"
    ):
        check_within_budget(
            x + torch.tensor([0.0, 0.0, 0.05, 0.0]).view(4, 1, 1, 1), x, "linf", 0.03, "bad", 10
        )
    step = torch.zeros_like(x)
    step[1, 0, 0, 0] = 0.6
    with pytest.raises(RuntimeError, match="l2 0.6 from image 1"):
        check_within_budget(x + step, x, "l2", 0.5, "bad", 0)
