"""Job records: what one job of a stage is given, declared once, torch-free (issue 42).

A record is built from the validated config by one function here; the rule's params are the record (`params()`),
the job's script rebuilds it (`from_params`), and the tests build it with the same function, so a rule, its script
and the tests' fixtures cannot drift apart. The stage functions take the record instead of a dozen arguments.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .attack_specs import shard_range
from .decisions import attack_settings, aware_methods, detection_keys
from .detector_specs import aware_fpr
from .names import attack_key, eps_tag
from .seeds import keyed_seed


@dataclass(frozen=True)
class AttackJob:
    """One attack job: attack `name` (`spec`: class, norm, params, rounding, restarts) at `eps` on the attacked
    images of `split` (`images` of them, `None` = all, chosen with the run's `seed`), in batches of `batch_size`
    (a batch's random draws come from its seed and position: another batch size gives other adversarials, so it
    is a result setting). `shard` = (k, N): only the k-th (0-based) of N shards (`merge_attack_shards` joins
    them); `limit`: only the first that many of the attacked images (the adaptive attack)."""

    name: str
    spec: dict
    eps: float
    split: str = "test"
    images: int | None = None
    seed: int = 0
    batch_size: int = 500
    shard: tuple[int, int] | None = None
    limit: int | None = None

    @property
    def job_seed(self) -> int:
        """The seed of this job's batches: one per (attack, epsilon, split) of the run's seed (what the attack file
        records as `seed`)."""
        return keyed_seed(self.seed, f"{self.name}/{float(self.eps)!r}/{self.split}")

    def batch_seed(self, first: int) -> int:
        """The seed of the batch whose first image is image `first` of the job: a batch's random draws (PGD's
        random start, AutoAttack's restarts) depend on nothing else, so shards of a job reproduce it batch for
        batch."""
        return (self.job_seed * 1_000_033 + first * 7_919) % (2**31)

    def shard_bounds(self, n: int) -> tuple[int, int]:
        """Images [first, end) of the job's `n` attacked images that this job (or its shard) attacks."""
        if self.shard is None:
            return 0, n
        k, shards = self.shard
        return shard_range(
            n, self.batch_size, k, shards, f"split {self.split!r} of {self.name} at eps {self.eps:g}"
        )

    def params(self) -> dict:
        """The record as a rule's params (key-sorted JSON values: Snakemake compares params by their text)."""
        return json.loads(json.dumps(asdict(self), sort_keys=True))

    @classmethod
    def from_params(cls, params: dict, **changes) -> AttackJob:
        """The record a rule's params hold (`params()`), with `changes` (e.g. the shard of a shard job)."""
        values = {**dict(params), **changes}
        if values.get("shard") is not None:
            values["shard"] = tuple(int(v) for v in values["shard"])
        values["eps"] = float(values["eps"])
        return cls(**values)


def attack_job(config: dict, name: str, eps: float, split: str, seed: int) -> AttackJob:
    """The `attack` rule's job for attack `name` at `eps` on `split` under the validated `config`, for the run of
    `seed` (the adaptive attack's starts from the same record: its images, seed and batches are the attack's)."""
    return AttackJob(
        name=name,
        spec=attack_settings(copy.deepcopy(config["attacks"][name])),
        eps=float(eps),
        split=split,
        images=config["attack_defaults"]["images"].get(split),
        seed=int(seed),
        batch_size=int(config["attack_defaults"]["batch_size"]),
    )


AWARE_OFF = {"enabled": False, "methods": []}


@dataclass(frozen=True)
class AwareRun:
    """What the detector-aware attack of one detect job is given: its `settings` (`detection.aware`), the
    `epsilons` it attacks at (the unbounded sanity run comes on top), the `seed` of its first run, and the
    calibrated false-positive rate `fpr` whose threshold an adversarial must stay under."""

    settings: dict
    epsilons: tuple[float, ...]
    seed: int
    fpr: float


@dataclass(frozen=True)
class DetectionJob:
    """One detect job: detector `method` with its `settings` (`detection.<method>`), learning from and tested on
    `attack_keys` ((attack, epsilon, key), sorted: the order of attacks in the YAML file does not change what a
    detector learns), its thresholds calibrated at the false-positive rates `fprs`, the noise `controls` at each
    epsilon, and the detector-aware attack's settings `aware` (`AWARE_OFF` for a detector it does not attack),
    with the run's `seed`."""

    method: str
    settings: dict
    seed: int = 0
    attack_keys: tuple[tuple[str, float, str], ...] = ()
    fprs: tuple[float, ...] = (0.01, 0.05)
    controls: tuple[str, ...] = ()
    aware: dict = field(default_factory=lambda: dict(AWARE_OFF))

    @property
    def keys(self) -> list[str]:
        return [key for _, _, key in self.attack_keys]

    @property
    def key_eps(self) -> dict[str, float]:
        return {key: float(eps) for _, eps, key in self.attack_keys}

    @property
    def key_attack(self) -> dict[str, str]:
        return {key: attack for attack, _, key in self.attack_keys}

    @property
    def epsilons(self) -> list[float]:
        return sorted(set(self.key_eps.values()))

    @property
    def runs_aware(self) -> bool:
        """Whether the job runs the detector-aware attack on its pooled detector."""
        return bool(self.aware["enabled"]) and self.method in self.aware["methods"]

    @property
    def aware_epsilons(self) -> list[float]:
        """The epsilons the detector-aware attack runs at (`detection.aware.epsilons`; null: every one)."""
        if self.aware.get("epsilons") is None:
            return self.epsilons
        chosen = {eps_tag(e) for e in self.aware["epsilons"]}
        return [e for e in self.epsilons if eps_tag(e) in chosen]

    def aware_run(self) -> AwareRun:
        """The detector-aware attack's run on this job's pooled detector (`detection.aware.fpr` must be one of
        the job's calibrated rates: a ConfigError naming both keys otherwise)."""
        return AwareRun(self.aware, tuple(self.aware_epsilons), self.seed, aware_fpr(self.aware, self.fprs))

    def params(self) -> dict:
        """The record as a rule's params (key-sorted JSON values: Snakemake compares params by their text)."""
        return json.loads(json.dumps(asdict(self), sort_keys=True))

    @classmethod
    def from_params(cls, params: dict, **changes) -> DetectionJob:
        """The record a rule's params hold (`params()`), with `changes`."""
        values = {**dict(params), **changes}
        values["attack_keys"] = tuple((str(a), float(e), str(k)) for a, e, k in values.get("attack_keys", ()))
        values["fprs"] = tuple(float(f) for f in values.get("fprs", ()))
        values["controls"] = tuple(values.get("controls", ()))
        return cls(**values)


def detection_job(config: dict, method: str, seed: int) -> DetectionJob:
    """The `detect` rule's job for detector `method` under the validated `config`, for the run of `seed`."""
    detection = config["detection"]
    return DetectionJob(
        method=method,
        settings=copy.deepcopy(detection.get(method, {})),
        seed=int(seed),
        attack_keys=tuple(
            sorted((name, float(eps), attack_key(name, eps)) for name, eps in detection_keys(config))
        ),
        fprs=tuple(sorted(float(f) for f in detection["fprs"])),
        controls=tuple(sorted(detection["controls"])),
        aware=(
            {**copy.deepcopy(detection["aware"]), "methods": [method]}
            if method in aware_methods(config)
            else dict(AWARE_OFF)
        ),
    )


@dataclass(frozen=True)
class CheckpointSource:
    """A brought classifier (`classifier.checkpoint`): the file at `path`, pinned by its `sha256`; `builder`
    ("file.py:function") where the file is a state dict; the normalisation (`mean`, `std`, per channel) it
    expects its inputs in, where it does not apply its own."""

    path: str | Path
    sha256: str
    builder: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    @classmethod
    def from_settings(cls, path, settings: dict) -> CheckpointSource:
        """The record of the `classifier.checkpoint` block `settings` (its `path` given apart: the job's input)."""
        return cls(
            path, settings["sha256"], settings.get("builder"), settings.get("mean"), settings.get("std")
        )
