"""Plug-in files (issue 24: "adding a defence of any kind is one class"): a file with one class per defence, in
src/advdefense/plugins/ or a directory of $ADVDEFENSE_PLUGINS, is all a Snakemake run needs. The planning layer
reads its declarations without running it (no torch); the jobs import it. docs/plugins/example_defences.py (the
README's worked example, one defence of each kind) is run here end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from advdefense.config import ConfigError, load_yaml, validate_config
from advdefense.plan.detector_specs import DetectorSpec
from advdefense.plan.plugins import read_plugin_file, spec_from_attributes
from advdefense.plan.purifier_specs import BUILT_IN as PURIFIER_BUILT_IN
from advdefense.plan.purifier_specs import PurifierSpec
from advdefense.plan.training_specs import TrainingSpec
from conftest import REPO, job_counts, load_config, run_snakemake

EXAMPLES = REPO / "docs" / "plugins"
KINDS = {  # each kind's declaration fields, as `declare_plugins` gives them to the reader
    kind: {f.name for f in fields(spec_type)}
    for kind, spec_type in (
        ("purifier", PurifierSpec), ("detector", DetectorSpec), ("training method", TrainingSpec)
    )
}  # fmt: skip


def _plugin(tmp_path: Path, text: str, name: str = "mine.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _env(*dirs: Path) -> dict:
    return {**os.environ, "ADVDEFENSE_PLUGINS": os.pathsep.join(str(d) for d in dirs)}


def test_a_plug_in_file_is_read_without_running_it(tmp_path):
    """Literal declarations, tuple unpacking, a same-file base's attributes and each import style of `register`;
    classes without a registry's `register` are not defences. The file raises if run: it is only parsed."""
    path = _plugin(
        tmp_path,
        """
        import advdefense.detectors as det
        from advdefense import robust_training
        from advdefense.purifiers import Purifier, register as purifier

        raise RuntimeError("the planning layer must not run a plug-in file")

        class Base(Purifier):
            cost = 0.5
            gradient = "bpda"

        @purifier
        class Mine(Base):
            name, title = "mine", "My purifier"
            needs = ["autoencoder"]
            settings_schema = {"q": {"type": "integer", "default": 3}}

        @det.register
        class Score(object):
            name: str = "score"
            title = "My score"
            differentiable = False

        @robust_training.register
        class Train(object):
            name, title, reference = "train", "My training", "ref"
            passes = 3

        class NotRegistered(Purifier):
            name, title = "nope", "Nope"
        """,
    )
    found = {c.class_name: c for c in read_plugin_file(path, KINDS)}
    assert set(found) == {"Mine", "Score", "Train"}
    mine = found["Mine"]
    assert mine.kind == "purifier" and mine.attributes == {
        "cost": 0.5, "gradient": "bpda", "name": "mine", "title": "My purifier", "needs": ["autoencoder"],
        "settings_schema": {"q": {"type": "integer", "default": 3}},
    }  # fmt: skip
    spec = spec_from_attributes(PurifierSpec, mine.attributes, mine.where())
    assert spec.needs == ("autoencoder",) and spec.cost == 0.5 and spec.adaptive_label.startswith("BPDA")
    assert found["Score"].kind == "detector" and found["Score"].attributes["differentiable"] is False
    train = spec_from_attributes(TrainingSpec, found["Train"].attributes, "here")
    assert train.passes({"steps": 10}) == 3.0  # a number: a constant, whatever the settings
    assert spec_from_attributes(DetectorSpec, found["Score"].attributes, "here").classifier_copies == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name, title = 'x', TITLE", r"mine.py:6, class X: attribute 'title' is not a literal \('TITLE'\)"),
        ("name, title = ('x',) * 2", r"mine.py:6, class X: unpack the declaration name, title from a tuple"),
        ("title = 'no name'", r"mine.py:5, class X: no 'name'"),
        (
            "name, title = 'x', 'X'\n    def cost(self):\n        return 1",
            r"mine.py:7, class X: 'cost' is a function",
        ),
        (
            "name, title, gradient = 'x', 'X', 'finite'",
            r"class X: purifier 'x': gradient 'finite' is not one of",
        ),
        (
            "name, title = 'jpeg', 'My JPEG'",
            r"class X: purifier 'jpeg' is declared already \(a built-in one\)",
        ),
    ],
)
def test_a_plug_in_declaration_the_dag_cannot_read_is_an_error_naming_file_line_and_class(
    tmp_path, body, message
):
    _plugin(
        tmp_path,
        f"from advdefense.purifiers import Purifier, register\n\n\n@register\nclass X(Purifier):\n    {body}\n",
    )
    proc = subprocess.run(
        [sys.executable, "-c", "import advdefense.plan"], capture_output=True, text=True, env=_env(tmp_path)
    )
    assert proc.returncode != 0
    assert "PluginError" in proc.stderr and str(tmp_path / "mine.py") in proc.stderr, proc.stderr[-2000:]
    assert re.search(message, proc.stderr), proc.stderr[-2000:]


def test_a_syntax_error_or_a_missing_plug_in_directory_is_named(tmp_path):
    _plugin(tmp_path, "class (:\n")
    proc = subprocess.run([sys.executable, "-c", "import advdefense.plan"], capture_output=True, text=True,
                          env=_env(tmp_path))  # fmt: skip
    assert proc.returncode != 0 and f"plug-in {tmp_path / 'mine.py'}:1: not valid Python" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import advdefense.plan"], capture_output=True, text=True,
                          env=_env(tmp_path / "absent"))  # fmt: skip
    assert (
        proc.returncode != 0
        and f"$ADVDEFENSE_PLUGINS: '{tmp_path / 'absent'}' is not a directory" in proc.stderr
    )


def test_a_class_whose_imported_declaration_differs_from_its_file_is_refused(tmp_path):
    """A subclass of the built-in JPEG purifier inherits its reference, gradient rule and cost from another
    module: the file declares the defaults (no reference, the exact gradient, cost 0.1), so the DAG would label and
    price what the job does not run; `register` refuses it, naming the first field that differs."""
    _plugin(
        tmp_path,
        """
        from advdefense.purifiers import JpegPurifier, register

        @register
        class StrongJpeg(JpegPurifier):
            name, title = "strong_jpeg", "JPEG at quality 10"
        """,
    )
    proc = subprocess.run([sys.executable, "-c", "import advdefense.purifiers"], capture_output=True, text=True,
                          env=_env(tmp_path))  # fmt: skip
    assert proc.returncode != 0
    assert "StrongJpeg: reference is 'JPEG at a fixed quality" in proc.stderr, proc.stderr[-2000:]
    assert "when imported but its plug-in file declares ''; give it as a literal" in proc.stderr


EXAMPLE_CHECK = """
import json, sys
from advdefense.config import validate_config
from advdefense.errors import ConfigError
cfg = validate_config({"classifier": {"training": ["standard", "label_smoothing"]}})
out = {"torch_after_validation": "torch" in sys.modules,
       "purifiers": cfg["purification"]["methods"], "detectors": cfg["detection"]["methods"],
       "box_blur": cfg["purification"]["box_blur"], "label_smoothing": cfg["classifier"]["label_smoothing"]}
try:
    validate_config({"purification": {"box_blur": {"size": 0}}})
except ConfigError as e:
    out["bad_setting"] = str(e)
import torch
from advdefense.purifiers import build_purifier, check_gradient
from advdefense.detectors import REGISTRY
from advdefense.robust_training import training_method
from advdefense.models.resnet import CifarResNet
blur = build_purifier("box_blur", {"size": 2}, {})
g = torch.Generator().manual_seed(0)
x = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 36, 36, generator=g), 5, stride=1)  # smooth images
out["blur_shape"], out["blur_error"] = list(blur(x).shape), check_gradient(blur, x[:2])
out["blur_mean_gap"] = float((blur(x).mean() - x.mean()).abs())
score = REGISTRY["high_frequency"]({}, None, "test").torch_scorer()
noisy = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(0, 1)
out["noise_scores_higher"] = bool((score(noisy) > score(x)).all())
model = CifarResNet(8)
method = training_method("label_smoothing", model, {"smoothing": 0.1})
loss, logits = method.loss(x, torch.tensor([0, 1, 2, 3]), torch.Generator())
loss.backward()
out["loss"] = float(loss)
print(json.dumps(out))
"""


def test_the_example_plug_in_file_gives_a_defence_of_each_kind(tmp_path):
    """docs/plugins/example_defences.py through $ADVDEFENSE_PLUGINS, in a fresh interpreter: the config check lists
    its purifier and detector under `methods: null`, fills and checks their settings blocks without importing
    torch, and the registries build them: the blur keeps the shape and its true gradient, the detector scores
    noisy images higher, label smoothing trains."""
    proc = subprocess.run([sys.executable, "-c", EXAMPLE_CHECK], capture_output=True, text=True,
                          env=_env(EXAMPLES), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_after_validation"] is False
    assert out["purifiers"][-1] == "box_blur" and out["detectors"][-1] == "high_frequency"
    assert out["box_blur"] == {"size": 3} and out["label_smoothing"] == {"smoothing": 0.1}
    assert "purification.box_blur.size: 0 is less than the minimum of 1" in out["bad_setting"]
    assert out["blur_shape"] == [4, 3, 32, 32] and out["blur_error"] < 1e-6 and out["blur_mean_gap"] < 0.01
    assert out["noise_scores_higher"] is True
    assert 0 < out["loss"] < 10
    # the config check names each plug-in with its file and line
    proc = subprocess.run([sys.executable, "-m", "advdefense.config", str(REPO / "config/smoke.yaml")],
                          capture_output=True, text=True, env=_env(EXAMPLES))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        f"plug-in purifier 'box_blur': {EXAMPLES / 'example_defences.py'}:19 (class BoxBlur)" in proc.stdout
    )


def test_a_snakemake_run_has_the_plug_in_defences_with_no_other_edit(smoke_run, tmp_path):
    """The smoke config with the example plug-ins: the DAG has the blur's purification and adaptive jobs and the
    detector's detect job (dry run, against the same config without them), and the blur's purify job runs on
    the smoke run's data and classifier, writing images of the same shape within [0, 1]."""
    cfg = yaml.safe_load((REPO / "config/smoke.yaml").read_text())
    configfile = tmp_path / "smoke.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    plain = run_snakemake(tmp_path / "plain", configfile, "-n")
    plugged = run_snakemake(tmp_path / "plugged", configfile, "-n", env=_env(EXAMPLES))
    assert plain.returncode == 0 and plugged.returncode == 0, plugged.stderr[-3000:]
    before, after = job_counts(plain.stdout + plain.stderr), job_counts(plugged.stdout + plugged.stderr)
    runs = before["train_classifier"]
    assert after["detect"] == before["detect"] + runs
    assert cfg["purification"].get("methods") is None  # null: every registered purifier, the plug-in's too
    for rule in ("purify_clean", "purify_attack", "adaptive_attack"):  # one more purifier than the built-ins
        assert after[rule] == before[rule] * (len(PURIFIER_BUILT_IN) + 1) // len(PURIFIER_BUILT_IN), rule

    # one real job: the blur's purification of the clean test images, on a copy of the smoke run's inputs
    work = tmp_path / "job"
    for rel in ("results/data/synthetic-smoke.h5", "results/classifier/synthetic-smoke/model.pt"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(smoke_run / rel, work / rel)
    target = "results/purified/synthetic-smoke/box_blur/clean/test.h5"
    proc = run_snakemake(work, configfile, targets=(target,), env=_env(EXAMPLES))
    assert proc.returncode == 0, proc.stderr[-4000:]
    import h5py

    with h5py.File(work / target) as f:
        images, pred, label = f["purified"][:], f["pred_purified"][:], f["label"][:]
    assert images.shape[1:] == (3, 32, 32) and images.min() >= 0 and images.max() <= 1
    assert (
        pred == label
    ).mean() > 0.5  # the smoke classifier (100 % clean) still reads blurred smooth images


PLUG_INS_CHECK = """
import json, yaml
from advdefense.config import load_yaml, validate_config
cfg = load_yaml({config!r})
cfg["purification"]["methods"] = ["autoencoder", "plug-ins"]
cfg["detection"]["methods"] = ["latent_mlp", "plug-ins", "pca"]
out = validate_config(cfg)
print(json.dumps({{"purifiers": out["purification"]["methods"], "detectors": out["detection"]["methods"]}}))
"""


def test_a_list_of_methods_takes_every_plug_in_with_one_entry(tmp_path):
    """Issue 44: `plug-ins` in a list of methods is every registered method that is not built in, so a config that
    lists its methods (config/cifar10-full.yaml) still runs a dropped-in defence; without plug-ins it is nothing,
    and a list that then names nothing is an error."""
    script = PLUG_INS_CHECK.format(config=str(REPO / "config/smoke.yaml"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(EXAMPLES))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "purifiers": ["autoencoder", "box_blur"],
        "detectors": ["latent_mlp", "high_frequency", "pca"],
    }
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "ADVDEFENSE_PLUGINS"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["purifiers"] == ["autoencoder"]
    cfg = load_config("smoke.yaml")
    cfg["purification"]["methods"] = ["plug-ins"]
    with pytest.raises(ConfigError, match="purification.methods: 'plug-ins' found no plug-in"):
        validate_config(cfg)
    # the configs that list their methods say it
    for name in ("cifar10-full.yaml", "mini-detection-over-seeds.yaml"):
        assert "plug-ins" in load_yaml(REPO / "config" / name)["purification"]["methods"]
