"""A classifier the user brings (`classifier.source: checkpoint`): a `torch.export` program (`.pt2`), a
TorchScript file, or a builder function plus a state dict, wrapped so that it takes pixels in [0, 1] like every
model of the pipeline.

In the pipeline's checkpoint format (`checkpoint.py`) it is stored self-contained, as the program's archive in a
uint8 tensor: arch {"name": "external", "format": "export" or "torchscript", "source_format", "mean", "std",
"num_classes"}, so the checkpoint still loads with ``torch.load(weights_only=True)``. A builder's model (and a
RobustBench model) is exported with `torch.export` when it is imported (and the program checked against it on real
images; traced into TorchScript only where export fails); a brought program is stored as it came:
**a checkpoint never names code to run**. Every later job loads the checkpoint without the config; a
checkpoint that asked for a builder (`module:function`) could make it import and call anything.
TorchScript is deprecated by torch (2.14 warns on `torch.jit.trace`, `script` and `save`); its files are still
read, with the checks of `archives.py`.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, PipelineFileError
from ..plan.builder_spec import import_builder
from .archives import check_archive, load_torchscript
from .exported import ExportedModule, ExportFailed, export_model, is_exported_archive, load_exported

log = logging.getLogger(__name__)


def build_from_builder(spec: str) -> nn.Module:
    model = import_builder(spec)()
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"classifier.checkpoint.builder: {spec} returned a {type(model).__name__}, not an nn.Module"
        )
    return model


def load_user_model(path: str | Path, builder: str | None) -> tuple[nn.Module, str]:
    """The user's model from `path` and the format it came in ('export', 'torchscript' or 'state_dict')."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"classifier.checkpoint.path: file {path} does not exist")
    if builder is None:
        if not zipfile.is_zipfile(path):
            raise PipelineFileError(
                f"{path}: not a torch.export (.pt2) or TorchScript file (not a zip archive); for a state dict, set "
                "classifier.checkpoint.builder"
            )
        if is_exported_archive(path):
            return load_exported(path, str(path)), "export"
        return load_torchscript(path, str(path)), "torchscript"
    model = build_from_builder(builder)
    state, _ = fit_state_dict(model, _load_weights(path), path, builder)
    model.load_state_dict(state, strict=True)
    return model, "state_dict"


def _load_weights(path: Path):
    check_archive(path, str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PipelineFileError(
            f"{path}: not a state dict loadable with weights_only=True ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


# where checkpoints of the common training scripts keep the weights ({"state_dict": ..., "best_prec1": ...})
CONTAINER_KEYS = (
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "ema",
    "model_ema",
    "state",
    "weights",
    "params",
)
# what wrappers put in front of every key: nn.DataParallel / DistributedDataParallel, torch.compile
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _is_state(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def fit_state_dict(model: nn.Module, loaded, path, builder: str) -> tuple[dict, str]:
    """The weights of `loaded` (a state dict, or a checkpoint holding one under a CONTAINER_KEYS key) with the
    keys of `model`: a wrapper's prefix (`module.` of DataParallel, `_orig_mod.` of torch.compile) is stripped
    only where stripping makes every key fit. Returns the state and a line that says what was done; a mismatch
    is an error that counts the missing, unexpected and wrongly shaped keys, shows the first five of each and
    names the likely cause."""
    how = []
    state = loaded
    if not _is_state(state) and isinstance(state, dict):
        for key in CONTAINER_KEYS:
            if _is_state(state.get(key)):
                state, how = state[key], [f"the weights under {key!r}"]
                break
    if not _is_state(state):
        kinds = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise PipelineFileError(
            f"{path}: holds no state dict of tensors (found {str(kinds)[:200]}; looked at the top level and under "
            f"{', '.join(CONTAINER_KEYS)})"
        )
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for prefix in WRAPPER_PREFIXES:
        if set(state) != set(wanted) and all(k.startswith(prefix) for k in state):
            # a wrapper's prefix: stripped (the keys are then compared, and explained, without it)
            state, how = (
                {k[len(prefix) :]: v for k, v in state.items()},
                [*how, f"the prefix {prefix!r} stripped"],
            )
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {wanted[k]}"
        for k in wanted
        if k in state and tuple(state[k].shape) != wanted[k]
    ]
    if missing or unexpected or shapes:
        detail = f" ({', '.join(how)})" if how else ""
        raise PipelineFileError(
            _mismatch(f"{path}{detail}", builder, missing, unexpected, shapes, wanted, state)
        )
    return state, ", ".join(how) or "a plain state dict"


# the final layer's keys in the common architectures: a head for another number of classes
HEAD_KEYS = ("fc.weight", "fc.bias", "linear.weight", "linear.bias", "classifier.weight", "classifier.bias")


def _mismatch(path, builder, missing, unexpected, shapes, wanted, state) -> str:
    def first(items):
        return (
            ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
            if items
            else "none"
        )

    cause = "the checkpoint and the builder's model differ"
    prefixes = {k.split(".", 1)[0] + "." for k in unexpected if "." in k}
    if len(prefixes) == 1 and all(k.startswith(next(iter(prefixes))) for k in state):
        cause = (
            f"every key of the file starts with {next(iter(prefixes))!r}: a wrapper the builder's model lacks"
        )
    elif shapes and all(k.split(" ")[0].endswith(HEAD_KEYS) for k in shapes):
        cause = "the final layer's shape differs: a head for another number of classes"
    elif shapes:
        cause = "tensors of other shapes: another width"
    elif missing and unexpected:
        cause = "other layer names: another architecture or depth"
    elif missing:
        cause = "the file has fewer layers than the model: another depth"
    elif unexpected:
        cause = "the file has more layers than the model: another depth"
    return (
        f"{path}: its weights do not fit the model of {builder} ({len(wanted)} tensors) - likely cause: {cause}\n"
        f"  missing from the file ({len(missing)}): {first(missing)}\n"
        f"  unexpected in the file ({len(unexpected)}): {first(unexpected)}\n"
        f"  wrong shape ({len(shapes)}): {first(shapes)}"
    )


class ExternalClassifier(nn.Module):
    """`model((x - mean) / std)` for pixels x in [0, 1] (no normalisation where mean/std are None)."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        source_format: str = "torchscript",
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ):
        super().__init__()
        self.model = model
        self.arch = {
            "name": "external",
            "format": "export" if isinstance(model, ExportedModule) else "torchscript",
            "source_format": source_format,
            "mean": mean,
            "std": std,
            "num_classes": num_classes,
        }
        shift = torch.tensor(mean if mean is not None else [0.0, 0.0, 0.0]).view(1, 3, 1, 1)
        scale = torch.tensor(std if std is not None else [1.0, 1.0, 1.0]).view(1, 3, 1, 1)
        self.register_buffer("mean", shift, persistent=False)
        self.register_buffer("std", scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """What the pipeline's checkpoint stores: the program's archive (torch.export or TorchScript) as bytes."""
        if isinstance(self.model, ExportedModule):
            return {"exported": torch.frombuffer(bytearray(self.model.to_bytes()), dtype=torch.uint8)}
        buffer = io.BytesIO()
        torch.jit.save(self.model, buffer)
        return {"torchscript": torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)}

    @classmethod
    def from_checkpoint(cls, arch: dict, state: dict[str, torch.Tensor]) -> ExternalClassifier:
        """The stored model; a checkpoint that names code to run (a builder) instead of holding its model is
        refused without running anything."""
        fmt = arch.get("format")
        if fmt not in STORED_FORMATS or arch.get("builder") is not None:
            raise PipelineFileError(
                f"the checkpoint names code to build its model (builder {arch.get('builder')!r}, format "
                f"{arch.get('format')!r}) instead of holding it; a checkpoint never names code to run, so it is "
                f"refused: import the classifier again (classifier.source: checkpoint) to store it self-contained"
            )
        key = STORED_FORMATS[fmt]
        if not isinstance(state.get(key), torch.Tensor):
            raise PipelineFileError(f"external classifier checkpoint without its {fmt} archive ({key!r})")
        data = state[key].numpy().tobytes()
        if fmt == "export":
            model = load_exported(data, "its stored torch.export program")
        else:
            model = load_torchscript(data, "its stored TorchScript program")
        return cls(
            model,
            arch["num_classes"],
            arch.get("source_format", "torchscript"),
            arch.get("mean"),
            arch.get("std"),
        )


# the formats a stored external classifier may hold, and the checkpoint's key for each
STORED_FORMATS = {"export": "exported", "torchscript": "torchscript"}


def stored_program(model: nn.Module, images: torch.Tensor, what: str) -> nn.Module:
    """What a builder's or a RobustBench model is stored as: its `torch.export` program, checked against it on
    `images`; where export fails, its TorchScript trace (deprecated by torch; the warning says why)."""
    try:
        return export_model(model, images, what)
    except ExportFailed as exc:
        log.warning("%s; stored as traced TorchScript instead (deprecated by torch)", exc)
        return traced(model, images)


def traced(model: nn.Module, images: torch.Tensor) -> torch.jit.ScriptModule:
    """`model` (eval mode) traced into TorchScript on `images`, checked to give the same logits as the model on
    them: what a builder model is stored as, so that no later job calls the builder."""
    model.eval()
    with torch.no_grad():
        try:
            script = torch.jit.trace(model, images[:8], check_trace=False)
        except Exception as exc:
            raise ConfigError(
                f"classifier.checkpoint.builder: the model cannot be traced into TorchScript "
                f"({type(exc).__name__}: {str(exc)[:200]}); export it yourself with "
                f"torch.jit.script or torch.jit.trace and bring that file without a builder"
            ) from exc
        expected, found = model(images), script(images)
    if not torch.allclose(found, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max().clamp_min(1.0))):
        raise ConfigError(
            "classifier.checkpoint.builder: the model's TorchScript trace gives other logits than the "
            "model itself (data-dependent control flow?); export it yourself with torch.jit.script and "
            "bring that file without a builder"
        )
    return script


# calls on the same few images, spaced by calls on other images: an output that drifts is refused (a model that
# changes after its 30th call is caught; small batches keep the check cheap on a large model)
CHECK_CALLS = 40
CHECK_FEW = 8


def _state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        **{f"parameter {k}": v.detach().clone() for k, v in model.named_parameters()},
        **{f"buffer {k}": v.detach().clone() for k, v in model.named_buffers()},
    }


def check_classifier_model(
    model: nn.Module,
    num_classes: int,
    images: torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 1000,
) -> None:
    """Refuse a model that does not give N x `num_classes` finite logits for pixels in [0, 1] (random ones, and
    `images`: real images of the data set, on the 8-bit grid like every image the pipeline feeds it), that gives
    probabilities instead of logits, or that is not in eval-safe form; and a model that would fake robustness:
    in eval mode an image's logits must not depend on the other images of its batch nor on the batch's size (up
    to `batch_size`, the largest batch the pipeline feeds it), nor change from call to call (CHECK_CALLS spaced
    calls) or with the calls (its parameters and buffers the same after them), nor with the gradient mode, and the
    gradient of the loss must reach the input (an attack follows it)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(4, 3, 32, 32, generator=generator)
    real = noise if images is None else images.float()
    with torch.no_grad():
        _check_outputs(model, num_classes, noise, real)
        _check_eval_safe(model, real, generator, batch_size)
    _check_gradients(model, real)


def _check_outputs(model: nn.Module, num_classes: int, noise: torch.Tensor, real: torch.Tensor) -> None:
    for what, x in (("4 random images", noise), (f"{len(real)} images of the data set", real)):
        try:
            out = model(x)
        except Exception as exc:
            raise ConfigError(
                f"classifier.checkpoint: the model fails on {what} of 3 x 32 x 32 pixels in [0, 1] "
                f"({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc
        if not torch.is_tensor(out) or tuple(out.shape) != (len(x), num_classes):
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            raise ConfigError(
                f"classifier.checkpoint: the model's output for {what} is {shape}, expected "
                f"{len(x)} x {num_classes} (N x classes: the data set has {num_classes} classes)"
            )
        if not torch.isfinite(out).all():
            bad = int((~torch.isfinite(out)).any(1).sum())
            raise ConfigError(
                f"classifier.checkpoint: the model's output holds NaN or inf for {bad} of {what}; "
                f"every stage needs finite logits"
            )
    reference = model(real)
    if bool(((reference >= 0) & (reference <= 1)).all()) and torch.allclose(
        reference.sum(1), torch.ones(len(real)), atol=1e-4
    ):
        raise ConfigError(
            "classifier.checkpoint: the model outputs probabilities (each row in [0, 1], summing to 1), "
            "not logits; the attacks' losses need logits: drop its final softmax"
        )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def _check_eval_safe(
    model: nn.Module, real: torch.Tensor, generator: torch.Generator, batch_size: int
) -> None:
    before = _state_of(model)
    reference = model(real)
    few, reference_few = real[:CHECK_FEW], reference[:CHECK_FEW]
    drifted = False
    for _ in range(CHECK_CALLS):
        model(torch.rand(len(few), 3, 32, 32, generator=generator))  # other images between the calls
        drifted |= not torch.allclose(model(few), reference_few, atol=1e-5, rtol=1e-5)
    changed = [name for name, value in _state_of(model).items() if not torch.equal(value, before[name])]
    if changed:
        raise ConfigError(
            f"classifier.checkpoint: the model changes its own state when it is called ({', '.join(changed[:3])} "
            f"changed over {2 * CHECK_CALLS + 1} calls in eval mode): its outputs would depend on how often it was "
            "called; export it in eval mode without state that changes with use"
        )
    if drifted or not _same(reference[:1], model(real[:1])):
        raise ConfigError(
            "classifier.checkpoint: the model is not in eval-safe form: in eval mode its output for "
            "an image changes between calls or depends on the other images of the batch "
            "(dropout or noise, a state that changes with use, or batch norm using batch statistics); "
            "export it in eval mode"
        )
    large = max(
        batch_size, 2 * len(real) + 1
    )  # the real images first in a batch of the pipeline's largest size
    filler = torch.rand(large - len(real), 3, 32, 32, generator=generator)
    if not _same(model(torch.cat([real, filler]))[: len(real)], reference):
        raise ConfigError(
            f"classifier.checkpoint: the model's logits for the same {len(real)} images change when they come in a "
            f"batch of {large} instead of {len(real)}: an image's output must not depend on the batch size (the "
            "pipeline evaluates and attacks in batches of every size up to its batch_size)"
        )


def _check_gradients(model: nn.Module, real: torch.Tensor) -> None:
    with torch.no_grad():
        reference = model(real)
    x = real.clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if not _same(out.detach(), reference):
            raise ConfigError(
                "classifier.checkpoint: the model gives other logits when gradients are enabled (as under an "
                "attack) than without (as in evaluation): a model must compute the same function in both modes"
            )
        if not out.requires_grad:
            raise ConfigError(
                "classifier.checkpoint: the model's logits carry no gradient (detached, or computed outside "
                "autograd): the white-box attacks need the gradient of the loss with respect to the input"
            )
        loss = torch.nn.functional.cross_entropy(out, reference.argmax(1))
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all() or not bool(grad.abs().sum() > 0):
        what = "does not reach" if grad is None else "is zero or not finite at"
        raise ConfigError(
            f"classifier.checkpoint: the gradient of the loss {what} the input images: the white-box attacks "
            "would find nothing to follow (a masked or detached gradient); bring the model's plain forward"
        )


def check_brought_weights(path: str | Path, builder: str) -> str:
    """What `advdefense-check-config` says of a brought state dict before any job runs: its weights fit the
    builder's model (a line saying how), or the five-line explanation of why not (a PipelineFileError). Runs the
    builder, as the import job will."""
    model = build_from_builder(builder)
    state, how = fit_state_dict(model, _load_weights(Path(path)), path, builder)
    return f"{path}: {len(state)} tensors fit the model of {builder} ({how})"
