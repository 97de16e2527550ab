import math
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from advdefense.augment import RandomCropFlip
from advdefense.classifier import ClassificationObjective
from advdefense.models import CifarResNet
from advdefense.robust_training import Standard
from advdefense.training import FitSettings, TrainingDiverged, TrainingRun, fit, lr_lambda


def _setup(seed=0):
    torch.manual_seed(seed)
    model = CifarResNet(8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    epochs, bs, n = 4, 32, 96
    sched = {"name": "cosine", "warmup_epochs": 1}  # the loop builds the per-step schedule from it
    gen = torch.Generator().manual_seed(seed)
    data_gen = torch.Generator().manual_seed(123)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=data_gen)
    y = torch.randint(0, 10, (n,), generator=data_gen)
    return model, opt, sched, gen, (x, y), epochs, bs


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    model, opt, sched, gen, data, epochs, bs = _setup()
    objective = ClassificationObjective(Standard(model, {}), RandomCropFlip(4, True))
    run = TrainingRun(tmp_path / "a_state.pt", tmp_path / "a.csv")
    full = fit(model, objective, data, opt, FitSettings(epochs, bs, sched), gen, run)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    # the same run, killed in the middle of epoch 3 ...
    model, opt, sched, gen, data, epochs, bs = _setup()
    inner = ClassificationObjective(Standard(model, {}), RandomCropFlip(4, True))
    calls = {"n": 0}

    def dying(batch, g):
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 2:  # 3 steps per epoch: second step of epoch 3
            raise Interrupt
        return inner(batch, g)

    run_b = TrainingRun(tmp_path / "b_state.pt", tmp_path / "b.csv")
    with pytest.raises(Interrupt):
        fit(model, dying, data, opt, FitSettings(epochs, bs, sched), gen, run_b)
    state = torch.load(run_b.state_path, weights_only=True)
    assert state["epoch"] == 2

    # ... and restarted from scratch in a new process (fresh objects), resuming from the state file
    model, opt, sched, gen, data, epochs, bs = _setup(
        seed=99
    )  # other init: everything must come from the state
    objective = ClassificationObjective(Standard(model, {}), RandomCropFlip(4, True))
    resumed = fit(
        model,
        objective,
        data,
        opt,
        FitSettings(epochs, bs, sched),
        gen,
        TrainingRun(run_b.state_path, run_b.log_path),
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in full]
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,lr,train_loss,train_accuracy") and len(lines) == 5


@pytest.mark.parametrize("check_every", [None, 2, 25])  # every step (CPU default); deferred, as on a GPU
def test_non_finite_loss_stops_with_epoch_and_step(tmp_path, check_every):
    model, opt, sched, gen, data, epochs, bs = _setup()
    steps = {"n": 0}

    def exploding(batch, g):
        steps["n"] += 1
        out = model(batch[0].float() / 255)
        loss = F.cross_entropy(out, batch[1])
        return (loss * float("nan") if steps["n"] == 5 else loss), {}

    run = TrainingRun(tmp_path / "s.pt", tmp_path / "l.csv")
    with pytest.raises(TrainingDiverged, match="loss is nan at epoch 2, step 2"):
        fit(model, exploding, data, opt, FitSettings(epochs, bs, sched, check_every=check_every), gen, run)
    assert torch.load(run.state_path, weights_only=True)["epoch"] == 1  # only the good epoch was saved
    # with a deferred check the loop may run on to the check, never past the epoch's end
    assert steps["n"] == (6 if check_every == 25 else 5)  # 3 steps per epoch: 25 defers to the end


@pytest.mark.parametrize(
    "kwargs,message",
    [({"epochs": 0}, "epochs must be positive"), ({"batch_size": 0}, "batch_size must be positive")],
)
def test_fit_refuses_non_positive_settings(tmp_path, kwargs, message):
    _, _, sched, _, _, epochs, bs = _setup()
    args = {"epochs": epochs, "batch_size": bs, **kwargs}
    with pytest.raises(ValueError, match=message):
        FitSettings(args["epochs"], args["batch_size"], sched)


def test_schedules():
    cos = lr_lambda({"name": "cosine", "warmup_epochs": 1}, epochs=10, steps_per_epoch=10)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(55) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert cos(99) < 0.001
    step = lr_lambda({"name": "multistep", "milestones": [5, 8], "gamma": 0.1}, epochs=10, steps_per_epoch=10)
    assert step(49) == 1.0 and step(50) == pytest.approx(0.1) and step(80) == pytest.approx(0.01)
    assert lr_lambda({"name": "constant"}, 10, 10)(77) == 1.0


def test_random_crop_flip_is_a_shifted_window_of_the_padded_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    out = RandomCropFlip(4, flip=True)(x, gen)
    assert out.shape == x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(64):
        windows = [
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.equal(
                out[i], (lambda w: w.flip(-1) if f else w)(padded[i, :, dy : dy + 32, dx : dx + 32])
            )
        ]
        assert windows, f"image {i} is not a crop of its padded original"
        flips += windows[0][2]
    assert 10 < flips < 54  # about half are flipped
    assert torch.equal(RandomCropFlip(0, flip=False)(x, gen), x)


FAULTS_CHILD = r"""
import resource, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "tuned":
    from advdefense.snakemake_job import keep_freed_memory
    assert keep_freed_memory()
import torch
import torch.nn.functional as F
from advdefense.models import CifarResNet
torch.manual_seed(0)
model = CifarResNet(8)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(4):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_keep_freed_memory_stops_per_step_page_faults():
    src = str(Path(__file__).resolve().parents[1] / "src")
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", FAULTS_CHILD, src, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("default", "tuned")
    }
    # by default every step faults its activations in again; with the setting they are reused
    assert faults["default"] > 10 * 1000 and faults["tuned"] < faults["default"] / 5, faults
