"""Configuration: JSON-schema validation with defaults, plus the checks a schema cannot express.

Every error is a :class:`ConfigError` whose message starts with the dotted key that is wrong,
so that a user knows which line of the YAML file to change.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration value is missing, malformed or inconsistent."""


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


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    with path.open() as fh:
        data = yaml.safe_load(fh)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, not {type(data).__name__}")
    return data


def default_schema_path() -> Path:
    """The schema shipped with the workflow (repository checkout)."""
    return Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def validate_config(config: Mapping[str, Any], schema_path: str | Path | None = None) -> dict:
    """Validate `config` against the schema, fill in defaults and run the semantic checks.

    Returns a new dict; the input is not modified. Raises ConfigError naming the bad key.
    """
    schema = load_yaml(schema_path or default_schema_path())
    cfg = copy.deepcopy(dict(config))
    errors = sorted(_DefaultFillingValidator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_key_path(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    check_semantics(cfg)
    return cfg


def check_semantics(cfg: dict) -> None:
    """Checks that JSON schema cannot express; each error names its key."""
    depth = cfg["classifier"]["depth"]
    if (depth - 2) % 6 != 0:
        raise ConfigError(
            f"classifier.depth: {depth} is not of the form 6n+2 (CIFAR ResNets have depth 20, 32, 44, 56, 110 ...)"
        )
    data = cfg["dataset"]
    if data["source"] == "local":
        if not data.get("path"):
            raise ConfigError("dataset.path: required when dataset.source is 'local'")
        from .data import check_cifar_batches_dir  # local import: keeps config light

        check_cifar_batches_dir(data["path"], key="dataset.path")
    flow = cfg["flow"]
    if flow["source"] == "pretrained":
        for key in ("checkpoint", "hparams"):
            if not flow["pretrained"][key]:
                raise ConfigError(f"flow.pretrained.{key}: required when flow.source is 'pretrained'")
    attacks = cfg.get("attacks", {})
    for name in cfg["tables"]["table3"]["attacks"] or []:
        if name not in attacks:
            raise ConfigError(f"tables.table3.attacks: {name!r} is not generated (configured attacks: {sorted(attacks)})")
    splits = cfg["purification"]["splits"] or []
    for split in splits:
        if split not in cfg["attack_defaults"]["splits"]:
            raise ConfigError(f"purification.splits: {split!r} is not attacked (attack_defaults.splits is "
                              f"{cfg['attack_defaults']['splits']})")
    if cfg["purification"]["enabled"] and "test" not in cfg["attack_defaults"]["splits"]:
        raise ConfigError("attack_defaults.splits: purification (Table 3) needs the test split attacked")
    det = cfg["detection"]
    if det["enabled"] and attacks:
        if set(cfg["attack_defaults"]["splits"]) != {"train", "test"}:
            raise ConfigError("attack_defaults.splits: detection trains on attacked train images and tests on "
                              "attacked test images; attack both splits or set detection.enabled: false")
        if "latent_mlp" not in det["methods"]:
            raise ConfigError("detection.methods: must include latent_mlp (the paper's detector; Tables 4 and 5 use it)")
        if not cfg["latents"]["enabled"]:
            raise ConfigError("detection.methods: latent_mlp needs latents.enabled: true")
        if det["mmd"]["enabled"] and det["mmd"]["table_batch_size"] not in det["mmd"]["batch_sizes"]:
            raise ConfigError(f"detection.mmd.table_batch_size: {det['mmd']['table_batch_size']} is not one of "
                              f"detection.mmd.batch_sizes {det['mmd']['batch_sizes']}")
    if "clean" in attacks:
        raise ConfigError("attacks.clean: 'clean' is reserved for the unattacked images; choose another name")
    for name, spec in cfg.get("attacks", {}).items():
        from .attacks import check_attack_spec  # foolbox is only needed when attacks are configured

        check_attack_spec(name, spec)


def resolve_device(name: str):
    """Map the `device` config value to a torch.device; unknown or unavailable devices raise ConfigError."""
    import torch

    if not re.fullmatch(r"auto|cpu|cuda|cuda:[0-9]+|mps", name):
        raise ConfigError(f"device: unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available on this machine")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("device: 'mps' requested but MPS is not available on this machine")
    return torch.device(name)


def eps_tag(eps: float) -> str:
    """Canonical text of an epsilon used in file names: 0.02 -> '0.02', 8/255 -> '0.0313725'."""
    text = f"{float(eps):.7g}"
    if "e" in text:
        text = f"{float(eps):.10f}".rstrip("0").rstrip(".")
    return text
