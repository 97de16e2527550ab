"""Configuration: JSON-schema validation with defaults, plus the checks a schema cannot express.

Every error is a :class:`ConfigError` whose message starts with the dotted key that is wrong,
so that a user knows which line of the YAML file to change.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import ConfigError
from .plan import decisions
from .plan.attack_specs import check_attack_method, check_attack_spec, shard_range
from .plan.builder_spec import check_builder_spec
from .plan.decisions import attacked_splits, detection_attacks, robustbench_checkpoint
from .plan.detector_specs import BUILT_IN as DETECTORS_BUILT_IN
from .plan.detector_specs import DETECTORS, PAPER_DETECTOR, aware_fpr, detector_spec
from .plan.names import CLEAN, NOISE_CONTROL_NAMES, SEED_RUN, check_sha256_pin, eps_tag
from .plan.purifier_specs import BUILT_IN as PURIFIERS_BUILT_IN
from .plan.purifier_specs import PURIFIERS, purifier_spec
from .plan.training_specs import TRAININGS, training_methods, training_spec
from .sources import check_cifar_batches_dir, check_labels_setting, split_sizes

__all__ = ["ConfigError", "check_config_files", "load_yaml", "validate_config"]


def _extend_with_defaults(validator_class):
    """A validator that fills in `default` values while it validates (jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_DefaultFillingValidator = _extend_with_defaults(jsonschema.Draft7Validator)
# `type: integer` means an int: JSON Schema counts 5.0 as an integer, but a job that gets 5.0 fails after Snakemake
# has seen a changed param and deleted the finished output (an `epochs: 5.0` typo would cost a trained model)
_StrictValidator = jsonschema.validators.extend(
    _DefaultFillingValidator,
    type_checker=_DefaultFillingValidator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


class _StrictLoader(yaml.SafeLoader):
    """YAML as a config file may be written: no aliases (`*name`: nine nested ones expand a 4 kB file into
    hundreds of millions of values) and no key given twice in one mapping (YAML keeps the last one silently)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(
                f"line {event.start_mark.line + 1}: the alias *{event.anchor} repeats another part of the file; "
                "a config file has no aliases (write the values out)"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice in one block (first on line "
                    f"{seen[key]}); YAML would keep only the last: delete one"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict:
    """A YAML mapping from `path`; a missing or empty file, a syntax error (with its line and column), an alias,
    a key given twice or a non-mapping top level is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with path.open() as fh:
            data = yaml.load(fh, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path}: YAML syntax error at {where}: {problem}") from None
    if data is None:
        raise ConfigError(
            f"config file {path} is empty (or only comments): Snakemake refuses it without naming it; "
            "give it at least one key, or leave it out of --configfile"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top level, not {type(data).__name__}"
        )
    return data


MAX_CONFIG_VALUES = 100_000  # far above any real config (the paper's has a few hundred values)


def check_plain_values(config: Mapping[str, Any]) -> None:
    """What the YAML may hold before the schema looks at it (the schema's checks walk every value, and would
    walk an alias-expanded tree for hours): plain nested mappings and lists, each value once (no alias, as
    Snakemake's own YAML reading keeps them), string keys (`on:`, `1:`, `null:` are a bool, an int and None in
    YAML), and finite numbers (`.nan` passes every `minimum`). Errors name the key."""
    seen: set[int] = set()
    queue: deque[tuple[str, Any]] = deque(
        [("", config)]
    )  # breadth first: an alias is named where it is first used
    count = 0
    while queue:
        where, value = queue.popleft()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{where or '<top level>'}: the config holds more than {MAX_CONFIG_VALUES} values"
            )
        if isinstance(value, Mapping | list):
            if id(value) in seen:
                raise ConfigError(
                    f"{where}: this value is the same object as another key's (a YAML alias *name); "
                    "a config has no aliases: write the values out"
                )
            seen.add(id(value))
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for key, item in items:
                if isinstance(value, Mapping) and not isinstance(key, str):
                    raise ConfigError(
                        f"{where + '.' if where else ''}{key!r}: a key must be a name, but YAML reads this one as "
                        f"{type(key).__name__} {key!r} (on/off/yes/no/true/false/null and numbers are not names): "
                        "quote it, or choose another name"
                    )
                queue.append((f"{where}.{key}" if where else str(key), item))
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not a finite number")


def default_schema_path() -> Path:
    """The schema shipped with the workflow (repository checkout)."""
    return Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def with_plug_in_blocks(schema: dict) -> dict:
    """The schema with the settings block that each registered plug-in declares (`settings_schema`: the JSON
    schema properties of `classifier.<name>` for a training method, of `detection.<name>` for a detector), so
    that adding a defence with settings takes its class and no edit of the schema file. A block the schema file
    already has (the built-ins') stays as it is."""
    sections = {"classifier": TRAININGS, "detection": DETECTORS, "purification": PURIFIERS}
    for section, specs in sections.items():
        properties = schema["properties"][section]["properties"]
        for name, spec in specs.items():
            if spec.settings_schema is not None and name not in properties:
                properties[name] = {
                    "type": "object",
                    "additionalProperties": False,
                    "default": {},
                    "properties": copy.deepcopy(spec.settings_schema),
                }
    return schema


def validate_config(config: Mapping[str, Any], schema_path: str | Path | None = None) -> dict:
    """Validate `config` against the schema, fill in defaults and run the semantic checks.

    Returns a new dict; the input is not modified. Raises ConfigError naming the bad key.
    """
    schema = with_plug_in_blocks(load_yaml(schema_path or default_schema_path()))
    check_plain_values(config)
    cfg = copy.deepcopy(dict(config))
    if isinstance(cfg.get("tables"), Mapping) and "resources" in cfg["tables"]:
        raise ConfigError(
            "tables.resources: moved to light_jobs.resources (the resources of every light job: shard merging, "
            "summaries, tables, figures, reports, seeds gathering, not only the tables)"
        )
    errors = sorted(_StrictValidator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_key_path(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    # methods: null (the default) = every registered detector, plug-ins included, in declaration order; a list may
    # say `plug-ins` among its names: every registered one that is not built in (the plug-ins found)
    for key, registry, built_in in (
        ("detection.methods", DETECTORS, DETECTORS_BUILT_IN),
        ("purification.methods", PURIFIERS, PURIFIERS_BUILT_IN),
    ):
        section, field = key.split(".")
        methods = cfg[section][field]
        cfg[section][field] = (
            list(registry) if methods is None else expand_plug_ins(methods, registry, built_in, key)
        )
    check_semantics(cfg)
    return cfg


PLUG_INS = "plug-ins"  # in a list of methods: every registered method that is not built in


def expand_plug_ins(methods: list, registry: Mapping, built_in: frozenset, key: str) -> list[str]:
    """`methods` with the entry `plug-ins` replaced by every registered method that is not built in (in the order
    they were registered; a name listed already keeps its place). A list that then names nothing is an error."""
    out: list[str] = []
    for name in methods:
        for found in [n for n in registry if n not in built_in] if name == PLUG_INS else [name]:
            if found not in out:
                out.append(found)
    if not out:
        raise ConfigError(
            f"{key}: {PLUG_INS!r} found no plug-in (src/advdefense/plugins/, ADVDEFENSE_PLUGINS) and the list "
            "names nothing else; name a method or set it to null (every registered one)"
        )
    return out


DEFAULT_CALIBRATION = 1000  # dataset.calibration_size when null and detection runs


def check_semantics(cfg: dict) -> None:
    """Checks that JSON schema cannot express; each error names its key."""
    depth = cfg["classifier"]["depth"]
    if (depth - 2) % 6 != 0:
        raise ConfigError(
            f"classifier.depth: {depth} is not of the form 6n+2 (CIFAR ResNets have depth 20, 32, 44, 56, 110 ...)"
        )
    check_classifier_training(cfg["classifier"])
    check_classifier_source(cfg)
    check_purification(cfg)
    seeds = cfg.get("seeds")
    if seeds is not None:
        if not seeds:
            raise ConfigError(
                "seeds: an empty list runs nothing; list at least one seed (or null: one run with `seed`)"
            )
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ConfigError(
                f"seeds: {', '.join(map(str, repeated))} listed more than once; each seed is one run"
            )
    data = cfg["dataset"]
    check_run_name(data["name"])
    if data["calibration_size"] is None:  # a calibration split only where detectors need thresholds
        detects = cfg["detection"]["enabled"] and bool(cfg.get("attacks"))
        data["calibration_size"] = DEFAULT_CALIBRATION if detects else 0
    if data["source"] == "local":
        if not data.get("path"):
            raise ConfigError("dataset.path: required when dataset.source is 'local'")
        check_cifar_batches_dir(data["path"], key="dataset.path")
    check_labels_setting(data)
    flow = cfg["flow"]
    if flow["source"] == "pretrained":
        for key in ("checkpoint", "hparams"):
            if not flow["pretrained"][key]:
                raise ConfigError(f"flow.pretrained.{key}: required when flow.source is 'pretrained'")
    attacks = cfg.get("attacks", {})
    check_attack_splits(cfg)
    for name in cfg["tables"]["table3"]["attacks"] or []:
        if name not in attacks:
            raise ConfigError(
                f"tables.table3.attacks: {name!r} is not generated (configured attacks: {sorted(attacks)})"
            )
    check_autoencoder_sweep(cfg)
    splits = cfg["purification"]["splits"] or []
    for split in splits:
        if split not in attacked_splits(cfg):
            raise ConfigError(
                f"purification.splits: {split!r} is not attacked (attacks.<name>.splits, default "
                f"attack_defaults.splits {cfg['attack_defaults']['splits']})"
            )
    det = cfg["detection"]
    if det["enabled"] and attacks:
        for name in det["attacks"] or []:
            if name not in attacks:
                raise ConfigError(
                    f"detection.attacks: {name!r} is not a configured attack (configured: {sorted(attacks)})"
                )
        for name in detection_attacks(cfg):
            if set(attacks[name]["splits"]) != {"train", "test"}:
                raise ConfigError(
                    f"attacks.{name}.splits: {attacks[name]['splits']}, but detection trains on "
                    f"attacked train images and tests on attacked test images; attack both splits, "
                    f"leave {name} out of detection.attacks, or set detection.enabled: false"
                )
        if PAPER_DETECTOR not in det["methods"]:
            raise ConfigError(
                f"detection.methods: must include {PAPER_DETECTOR} (the paper's detector; Tables 4 and 5 use it)"
            )
        if not cfg["latents"]["enabled"]:
            raise ConfigError("detection.methods: latent_mlp needs latents.enabled: true")
        check_detection(det, cfg)
        if det["mmd"]["enabled"] and det["mmd"]["table_batch_size"] not in det["mmd"]["batch_sizes"]:
            raise ConfigError(
                f"detection.mmd.table_batch_size: {det['mmd']['table_batch_size']} is not one of "
                f"detection.mmd.batch_sizes {det['mmd']['batch_sizes']}"
            )
    if CLEAN in attacks:
        raise ConfigError(
            f"attacks.{CLEAN}: '{CLEAN}' is reserved for the unattacked images; choose another name"
        )
    for name, spec in cfg.get("attacks", {}).items():
        if name in NOISE_CONTROL_NAMES:
            raise ConfigError(
                f"attacks.{name}: {name!r} is the name of a random-noise control of the detection files "
                f"(detection.controls: {', '.join(NOISE_CONTROL_NAMES)}); choose another name"
            )
        check_attack_spec(name, spec)
    for name, overrides in cfg["purification"]["adaptive"]["params"].items():
        if name not in attacks:
            raise ConfigError(
                f"purification.adaptive.params.{name}: no attack {name!r} is configured "
                f"(configured: {sorted(attacks)})"
            )
        check_attack_method(
            f"purification.adaptive.params.{name}",
            {**attacks[name], "params": {**(attacks[name].get("params") or {}), **overrides}},
        )
    check_sizes(cfg)


def check_run_name(name: str) -> None:
    """`dataset.name` names the run's directories (results/<stage>/<name>/ and results/data/<name>.h5): it must
    not be a path part ('.', '..', or hidden), nor look like a run of `seeds` (<name>-seed<s>), which another
    configuration with `seeds` writes to."""
    if name.startswith("."):
        raise ConfigError(
            f"dataset.name: {name!r} starts with a dot; it names directories of results/ "
            f"('..' would write into results/ itself, where other runs' files are): use a plain name"
        )
    if SEED_RUN.fullmatch(name):
        raise ConfigError(
            f"dataset.name: {name!r} ends in -seed<s>, the name of a run of `seeds` (a configuration "
            f"with dataset.name {name.rsplit('-seed', 1)[0]!r} and seeds would write to the same "
            f"files); choose another name, or use `seeds` / `seed`"
        )
    for method in TRAININGS:
        if name.endswith(f"-{method}"):
            raise ConfigError(
                f"dataset.name: {name!r} ends in -{method}, the name of a run of a list `classifier.training` (a "
                f"configuration with dataset.name {name[: -len(method) - 1]!r} and training [..., {method}] would "
                f"write to the same files); choose another name"
            )


def check_attack_splits(cfg: dict) -> None:
    """Give every attack its splits (`attacks.<name>.splits`, default `attack_defaults.splits`); each must
    include test, the split that every table and figure evaluates."""
    for name, spec in cfg.get("attacks", {}).items():
        own = "splits" in spec
        spec.setdefault("splits", list(cfg["attack_defaults"]["splits"]))
        if "test" not in spec["splits"]:
            key = f"attacks.{name}.splits" if own else "attack_defaults.splits"
            raise ConfigError(
                f"{key}: {spec['splits']} leaves out test, the split every table and figure "
                f"evaluates attacks on{'' if own else f' (the splits of attacks.{name})'}"
            )


def check_classifier_training(classifier: dict) -> None:
    """`classifier.training`: registered method names (a list: one classifier each, which only training can
    make); the settings blocks' ranges are the schema's (epsilon > 0, steps >= 1 ...)."""
    methods = training_methods(classifier)
    for name in methods:
        training_spec(name)  # an unknown name: a ConfigError naming classifier.training
    if len(methods) > 1 and classifier["source"] != "train":
        raise ConfigError(
            f"classifier.training: {len(methods)} methods ({', '.join(methods)}) train one classifier each, "
            f"but classifier.source is {classifier['source']!r}: a brought classifier is not trained here"
        )


def check_classifier_source(cfg: dict) -> None:
    """With `classifier.source: checkpoint`: the file exists and has the pinned sha256 (checked before any
    job runs, and again by the job), mean and std come together. With `robustbench`: a name and a sha256 pin,
    and a checkpoint file already in the zoo's place has that sha256 (an absent one is downloaded by the
    import job, which checks the name against the installed package)."""
    classifier = cfg["classifier"]
    if classifier["source"] == "robustbench":
        check_robustbench_source(cfg)
        return
    if classifier["source"] != "checkpoint":
        return
    ckpt = classifier["checkpoint"]
    if not ckpt["path"]:
        raise ConfigError("classifier.checkpoint.path: required when classifier.source is 'checkpoint'")
    if not ckpt["sha256"]:
        raise ConfigError(
            "classifier.checkpoint.sha256: required when classifier.source is 'checkpoint' (the "
            "file's sha256, e.g. from `sha256sum`): the pipeline only runs the model it was told to"
        )
    if not Path(ckpt["path"]).is_file():
        raise ConfigError(f"classifier.checkpoint.path: file {ckpt['path']} does not exist")
    check_sha256_pin(ckpt["path"], ckpt["sha256"], "classifier.checkpoint.sha256")
    if (ckpt["mean"] is None) != (ckpt["std"] is None):
        raise ConfigError("classifier.checkpoint.mean, .std: give both (the input normalisation) or neither")
    if ckpt["builder"] is not None:
        check_builder_spec(ckpt["builder"])


def check_robustbench_source(cfg: dict) -> None:
    zoo = cfg["classifier"]["robustbench"]
    for key, what in (
        ("name", "the zoo's name of the model"),
        ("sha256", "the sha256 of its checkpoint file"),
    ):
        if not zoo[key]:
            raise ConfigError(
                f"classifier.robustbench.{key}: required when classifier.source is 'robustbench' ({what}): "
                "the pipeline only runs the model it was told to"
            )
    path = robustbench_checkpoint(cfg)
    if path.is_file():
        check_sha256_pin(path, zoo["sha256"], "classifier.robustbench.sha256")


def check_purification(cfg: dict) -> None:
    """Purifier names against the registry."""
    for name in cfg["purification"]["methods"]:
        purifier_spec(name)  # an unknown name is an error naming purification.methods


def check_autoencoder_sweep(cfg: dict) -> None:
    """`purification.autoencoder_sweep`: its attacks exist at its epsilon on the test split, its adaptive attack
    too, and purification runs (the sweep's points are purifiers)."""
    sweep = cfg["purification"]["autoencoder_sweep"]
    if not sweep.get("points"):
        return
    key = "purification.autoencoder_sweep"
    for point, settings in sweep["points"].items():
        settings = settings or {}
        brought = {k for k in ("checkpoint", "sha256") if k in settings}
        if brought and brought != {"checkpoint", "sha256"}:
            raise ConfigError(
                f"{key}.points.{point}: a brought autoencoder needs both checkpoint and sha256 (has only "
                f"{', '.join(sorted(brought))})"
            )
        if brought and set(settings) - brought:
            raise ConfigError(
                f"{key}.points.{point}: {', '.join(sorted(set(settings) - brought))} beside checkpoint: a brought "
                "autoencoder is as its run trained it (its widths, noise and epochs are read from the file)"
            )
        if brought:
            if not Path(settings["checkpoint"]).is_file():
                raise ConfigError(f"{key}.points.{point}.checkpoint: {settings['checkpoint']} is not a file")
            check_sha256_pin(settings["checkpoint"], settings["sha256"], f"{key}.points.{point}.sha256")
    if not cfg["purification"]["enabled"]:
        raise ConfigError(
            f"{key}.points: the sweep's autoencoders are purifiers; set purification.enabled: true"
        )
    attacks = cfg.get("attacks") or {}
    columns = decisions.sweep_columns(cfg)
    if not columns:
        raise ConfigError(
            f"{key}.attacks: none of the paper's attacks {list(decisions.PAPER_ATTACKS)} is configured; name the "
            "attacks to measure recovery on"
        )
    adaptive = [sweep["adaptive"]] if sweep["adaptive"] is not None else []
    for field, names in (("attacks", [name for name, _ in columns]), ("adaptive", adaptive)):
        for name in names:
            if name not in attacks:
                raise ConfigError(
                    f"{key}.{field}: {name!r} is not a configured attack (configured: {sorted(attacks)})"
                )
            spec = attacks[name]
            if not any(abs(float(e) - float(sweep["epsilon"])) < 1e-12 for e in spec["epsilons"]):
                raise ConfigError(
                    f"{key}.{field}: attack {name!r} does not run at {key}.epsilon {sweep['epsilon']} (its "
                    f"epsilons: {spec['epsilons']})"
                )
            if "test" not in spec["splits"]:
                raise ConfigError(f"{key}.{field}: attack {name!r} does not attack the test split")


def check_detection(det: dict, cfg: dict) -> None:
    """Detection methods against the registry, the calibration split, the thresholds' FPRs and the
    detector-aware attack's settings."""
    for name in det["methods"]:
        detector_spec(name)  # an unknown name is an error naming detection.methods
    if any(DETECTORS[m].on_flow_outputs for m in det["methods"]) and not cfg["latents"]["enabled"]:
        raise ConfigError("detection.methods: latent_mlp and bits_per_dim need latents.enabled: true")
    calibration = cfg["dataset"]["calibration_size"]
    if calibration < 1:
        raise ConfigError(
            "dataset.calibration_size: detection needs a calibration split (> 0 clean images held "
            "out of training) for its thresholds; set it or detection.enabled: false"
        )
    for fpr in det["fprs"]:
        if fpr * calibration < 1 - 1e-9:
            raise ConfigError(
                f"detection.fprs: {fpr} is below 1/{calibration}, the smallest false-positive rate "
                f"that {calibration} calibration images (dataset.calibration_size) can set a "
                f"threshold for; raise calibration_size to at least {math.ceil(1 / fpr)} or drop {fpr}"
            )
    aware = det["aware"]
    if aware["enabled"]:
        aware_fpr(aware, det["fprs"])
        differentiable = [m for m in det["methods"] if DETECTORS[m].differentiable]
        for name in aware["methods"] or []:  # null: every differentiable one (plan.decisions.aware_methods)
            if name not in differentiable:
                raise ConfigError(
                    f"detection.aware.methods: {name!r} is not a configured detector with a "
                    f"differentiable score (those are: {', '.join(differentiable)})"
                )
        detected = sorted(
            {float(e) for name in detection_attacks(cfg) for e in cfg["attacks"][name]["epsilons"]}
        )
        for eps in aware["epsilons"] or []:  # null: every epsilon the detectors are evaluated at
            if eps_tag(eps) not in {eps_tag(e) for e in detected}:
                raise ConfigError(
                    f"detection.aware.epsilons: {eps!r} is not an epsilon of the attacks the detectors "
                    f"learn (detection.attacks: {', '.join(f'{e:g}' for e in detected)})"
                )


def check_sizes(cfg: dict) -> None:
    """Every count that the configuration and the data source fix, checked before any job runs (a job
    that found them wrong would fail after Snakemake had already deleted its old output)."""
    sizes = split_sizes(cfg["dataset"])
    attacked = {}
    for split in ("train", "test"):
        n = cfg["attack_defaults"]["images"][split]
        if n is not None and n > sizes[split]:
            raise ConfigError(
                f"attack_defaults.images.{split}: asked for {n} images but the {split} split has only "
                f"{sizes[split]}"
            )
        attacked[split] = sizes[split] if n is None else n
    shards, batch = cfg["attack_defaults"]["shards"], cfg["attack_defaults"]["batch_size"]
    if cfg.get("attacks"):
        for split in attacked_splits(cfg):
            shard_range(
                attacked[split], batch, 0, shards, f"the {split} split (attack_defaults.images.{split})"
            )
    aware = cfg["detection"]["aware"]
    if cfg["detection"]["enabled"] and cfg.get("attacks") and aware["enabled"]:
        if aware["images"] is not None and aware["images"] > attacked["test"]:
            raise ConfigError(
                f"detection.aware.images: {aware['images']} is more than the {attacked['test']} test "
                f"images that are attacked (attack_defaults.images.test)"
            )
        available = attacked["test"] if aware["images"] is None else aware["images"]
        if aware["sanity_images"] > available:
            raise ConfigError(
                f"detection.aware.sanity_images: {aware['sanity_images']} is more than the {available} "
                f"images the detector-aware attack runs on (detection.aware.images)"
            )
    adaptive = cfg["purification"]["adaptive"]
    if (
        cfg["purification"]["enabled"]
        and adaptive["enabled"]
        and adaptive["images"] is not None
        and adaptive["images"] > attacked["test"]
    ):
        raise ConfigError(
            f"purification.adaptive.images: {adaptive['images']} is more than the {attacked['test']} "
            f"test images that are attacked (attack_defaults.images.test); the adaptive attack runs "
            f"on a subset of those"
        )
    flow = cfg["flow"]
    if cfg["latents"]["enabled"] and flow["source"] == "train" and flow["init_images"] > sizes["train"]:
        raise ConfigError(
            f"flow.init_images: {flow['init_images']} is more than the {sizes['train']} training images"
        )
    mmd = cfg["detection"]["mmd"]
    if cfg["detection"]["enabled"] and cfg.get("attacks") and mmd["enabled"]:
        available = min(attacked["test"], sizes["calibration"])
        for b in mmd["batch_sizes"]:
            if b > available:
                raise ConfigError(
                    f"detection.mmd.batch_sizes: {b} is more than the {available} images a batch is "
                    f"drawn from (attacked test images, and calibration images as reference)"
                )


CLOCK_TOLERANCE_S = 60  # clocks of the nodes of a cluster that share a file system differ by seconds


def source_files(cfg: dict) -> list[Path]:
    """The files outside results/ that a config's jobs read: the local data set's directory, a brought
    classifier, a published flow."""
    sources = []
    if cfg["dataset"]["source"] == "local" and cfg["dataset"].get("path"):
        sources.append(Path(cfg["dataset"]["path"]))
    if cfg["classifier"]["source"] == "checkpoint" and cfg["classifier"]["checkpoint"]["path"]:
        sources.append(Path(cfg["classifier"]["checkpoint"]["path"]))
    if cfg["flow"]["source"] == "pretrained":
        sources += [
            Path(p)
            for p in (cfg["flow"]["pretrained"]["checkpoint"], cfg["flow"]["pretrained"]["hparams"])
            if p
        ]
    return sources


def check_file_times(roots: list[str | Path], now: float | None = None) -> None:
    """Refuse to start where a file under `roots` (results/ and the sources a config reads) was modified in the
    future: Snakemake would find every output after it out of date, delete the finished ones, make them again,
    then fail on its own fresh outputs being older than their input, and delete those too (a `touch -d` or a
    skewed clock would cost every finished model). The error names the files and the fix."""
    now = time.time() if now is None else now
    future = []
    for root in map(Path, roots):
        if not root.exists():
            continue
        files = [root] if root.is_file() else (p for p in root.rglob("*") if p.is_file())
        for file in files:
            try:
                mtime = file.stat().st_mtime
            except OSError:  # removed while we looked
                continue
            if mtime > now + CLOCK_TOLERANCE_S:
                future.append((mtime - now, file))
    if future:
        future.sort(reverse=True)
        shown = "\n  ".join(f"{file} ({ahead / 3600:.1f} h ahead)" for ahead, file in future[:5])
        more = f"\n  ... and {len(future) - 5} more" if len(future) > 5 else ""
        raise ConfigError(
            f"{len(future)} file(s) were modified in the future (a wrong clock, or `touch -d`); Snakemake would "
            f"delete finished outputs after them and then fail on the new ones. Nothing was run or deleted. Set "
            f"their time to now (`touch FILE`) or fix the clock:\n  {shown}{more}"
        )


def check_config_files(paths: list[str | Path], schema_path: str | Path | None = None) -> dict:
    """What `snakemake --configfile A B ...` would run with, checked before Snakemake reads the files
    (Snakemake itself reports a YAML syntax error without file or line, and a missing file with a
    traceback): each file must exist and parse; later files update earlier ones key by key, as in Snakemake."""
    merged: dict = {}
    for path in paths:
        _update(merged, load_yaml(path))
    return validate_config(merged, schema_path)


def _update(base: dict, new: dict) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _update(base[k], v)
        else:
            base[k] = v


def config_from_command_line(
    prog: str, description: str, argv: list[str] | None, flags: dict[str, str] | None = None
) -> tuple[argparse.Namespace, dict | None]:
    """Parse `prog FILE [FILE ...] [--flag ...]` and check the config files; on a problem print it (naming
    the file, line or key) and return None for the config."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("files", nargs="+", help="config files, in the order given to --configfile")
    for flag, help_text in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=help_text)
    args = parser.parse_args(argv)
    try:
        return args, check_config_files(args.files)
    except (ConfigError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return args, None


def main(argv: list[str] | None = None) -> int:
    """`advdefense-check-config FILE [FILE ...]`: check config files as the pipeline will (exit 1 with the
    reason on the first problem). `make run|smoke|mini` run it before Snakemake."""
    args, cfg = config_from_command_line("advdefense-check-config", main.__doc__, argv)
    if cfg is None:
        return 1
    print(
        f"{' + '.join(args.files)}: valid ({len(cfg.get('attacks', {}))} attack(s), dataset {cfg['dataset']['name']})"
    )
    ckpt = cfg["classifier"]["checkpoint"]
    if cfg["classifier"]["source"] == "checkpoint" and ckpt["builder"] is not None:
        # the weights against the builder's model now, not an hour into a run (runs the builder, as the import will)
        from .errors import PipelineFileError
        from .models.external import check_brought_weights

        try:
            print(f"  {check_brought_weights(ckpt['path'], ckpt['builder'])}")
        except (ConfigError, PipelineFileError) as exc:
            print(f"advdefense-check-config: classifier.checkpoint: {exc}", file=sys.stderr)
            return 1
    from .plan.plugins import FILE_DECLARED

    for (kind, name), plugin in sorted(FILE_DECLARED.items()):
        print(f"  plug-in {kind} {name!r}: {plugin.path}:{plugin.line} (class {plugin.class_name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
