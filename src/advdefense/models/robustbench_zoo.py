"""A classifier from the RobustBench model zoo (`classifier.source: robustbench`), loaded through the package
itself (`robustbench.utils.load_model`), pinned by the sha256 of its checkpoint file.

RobustBench keeps each checkpoint at <model_dir>/<dataset>/<threat_model>/<name>.pt and downloads it there
only when the file is absent; on a machine without network, place the file there yourself. Its models take
pixels in [0, 1] and normalise inside, as every model of this pipeline does. The import job exports the model
with torch.export (`models.exported`), so that no later job needs the package or runs its code.

Two shims, each for a fault of the PyPI release `robustbench` 1.1.1 (checked on it):
- it declares the dependency `pyautoattack` but imports `autoattack` (the name of the authors' unpackaged
  repository): where no `autoattack` module exists, the package's own `pyautoattack` (the same code) is
  registered under that name before robustbench is imported;
- its checkpoint load is `torch.load(path)` without `weights_only`: the load runs with
  TORCH_FORCE_WEIGHTS_ONLY_LOAD=1, so a checkpoint file can only hold tensors, never code to run.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path

from torch import nn

from ..errors import ConfigError
from ..plan.names import check_sha256_pin, robustbench_zoo_file
from .archives import check_archive

KEY = "classifier.robustbench"


def import_robustbench():
    """The `robustbench` package, importable beside `pyautoattack` (see the module's note)."""
    try:
        importlib.import_module("autoattack")
    except ImportError:
        try:
            package = importlib.import_module("pyautoattack")
        except ImportError:
            package = None
        if package is not None:
            sys.modules["autoattack"] = package
            for sub in ("state",):  # robustbench 1.1.1 imports `autoattack` and `autoattack.state` only
                with contextlib.suppress(ImportError):
                    sys.modules[f"autoattack.{sub}"] = importlib.import_module(f"pyautoattack.{sub}")
    try:
        return importlib.import_module("robustbench")
    except ImportError as exc:
        raise ConfigError(
            f"classifier.source: robustbench needs the `robustbench` package, which does not import here "
            f"({type(exc).__name__}: {exc}); install it with `pip install -e '.[robustbench]'`"
        ) from exc


def zoo_models(dataset: str, threat_model: str) -> dict:
    """{name: entry} of the installed package's zoo for (dataset, threat model); an unknown threat model or
    one the zoo does not have for `dataset` is a ConfigError naming the key."""
    import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    try:
        threat = ThreatModel(threat_model)
    except ValueError:
        raise ConfigError(
            f"{KEY}.threat_model: {threat_model!r} is not a RobustBench threat model "
            f"({', '.join(t.value for t in ThreatModel)})"
        ) from None
    zoo = model_dicts[BenchmarkDataset(dataset)]
    if threat not in zoo:
        raise ConfigError(
            f"{KEY}.threat_model: the installed robustbench has no {dataset} models for {threat_model} "
            f"(it has {', '.join(t.value for t in zoo)})"
        )
    return zoo[threat]


def check_zoo_name(name: str, dataset: str, threat_model: str) -> None:
    """Refuse a model the installed package does not know for (dataset, threat model), or one it cannot load
    from a single checkpoint file (an ensemble of files, or a model it takes from timm's hub)."""
    models = zoo_models(dataset, threat_model)
    if name not in models:
        close = [m for m in models if m.lower().startswith(name.lower()[:6])][:5]
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"{KEY}.name: the installed robustbench does not know {name!r} for {dataset} / {threat_model} "
            f"({len(models)} models there{hint})"
        )
    gdrive = models[name].get("gdrive_id")
    if gdrive is None or isinstance(gdrive, list):
        raise ConfigError(
            f"{KEY}.name: {name} is {'an ensemble of several checkpoints' if gdrive else 'served through timm'}"
            f" in robustbench; only models with one checkpoint file in model_dir can be pinned by sha256"
        )


@contextlib.contextmanager
def _weights_only_loads():
    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def load_zoo_model(
    name: str, threat_model: str, dataset: str, model_dir: str | Path, sha256: str
) -> tuple[nn.Module, Path, bool]:
    """The zoo model `name` (eval mode), the checkpoint file it came from, and whether it was downloaded now.
    A present file is checked against `sha256` before anything loads it; an absent one is downloaded by the
    package, and checked before the model is used; one that cannot be downloaded is a ConfigError naming the
    file to place."""
    check_zoo_name(name, dataset, threat_model)
    from robustbench.utils import load_model

    path = robustbench_zoo_file(model_dir, dataset, threat_model, name)
    downloaded = not path.is_file()
    if not downloaded:
        check_sha256_pin(path, sha256, f"{KEY}.sha256")
        check_archive(path, str(path))
    try:
        with _weights_only_loads():
            model = load_model(name, model_dir=str(model_dir), dataset=dataset, threat_model=threat_model)
    except Exception as exc:
        if downloaded:  # a download that failed half-way leaves no file that looks like the checkpoint
            path.unlink(missing_ok=True)
            raise ConfigError(
                f"{KEY}: the checkpoint {path} is absent and robustbench could not download it "
                f"({type(exc).__name__}: {str(exc)[:200]}); without network, place the file {name}.pt of "
                f"RobustBench's zoo ({dataset} / {threat_model}) at {path}"
            ) from exc
        raise ConfigError(
            f"{KEY}: robustbench could not load {name} from {path} ({type(exc).__name__}: {str(exc)[:300]}); "
            f"is it that model's checkpoint?"
        ) from exc
    if downloaded:
        check_sha256_pin(path, sha256, f"{KEY}.sha256")
    return model.eval(), path, downloaded
