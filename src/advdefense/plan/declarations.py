"""The one way a defence class gets its declaration (torch-free): a built-in class takes the one declared in its
kind's table (`plan.DETECTORS`, `plan.TRAININGS`); a class defined elsewhere (a plug-in, a test's toy) declares
itself by its class attributes, and its declaration joins that table."""

from __future__ import annotations

from dataclasses import fields

from ..errors import ConfigError
from .plugins import FILE_DECLARED, check_against_file


def declaration_of(cls, declared: dict, spec_type):
    """`declared[cls.name]`, or a new `spec_type` made of the class's attributes (added to `declared`)."""
    spec = declared.get(cls.name)
    if spec is None:
        spec = spec_type(**{f.name: getattr(cls, f.name) for f in fields(spec_type) if hasattr(cls, f.name)})
        declared[spec.name] = spec
    return spec


def declared(table: dict, name: str, key: str, kind: str):
    """`table[name]`, the declaration of a defence of `kind`; an unknown name is a ConfigError naming the config
    `key` and listing the registered ones."""
    if name not in table:
        raise ConfigError(f"{key}: unknown {kind} {name!r} (registered: {', '.join(table)})")
    return table[name]


def add_to_registry(registry: dict, cls, table: dict, spec_type, kind: str):
    """Register `cls` in `registry` (name -> class) with its declaration (`declaration_of`), which it returns;
    a name registered twice is an error naming both classes; a class of a plug-in file must carry the declaration
    its file gives (`plugins.check_against_file`)."""
    if cls.name in registry:
        raise ValueError(
            f"{kind} {cls.name!r} is registered twice ({registry[cls.name].__name__}, {cls.__name__})"
        )
    if (kind, cls.name) in FILE_DECLARED:
        check_against_file(cls, table[cls.name], spec_type)
    cls.spec = declaration_of(cls, table, spec_type)
    registry[cls.name] = cls
    return cls.spec


def remove_from_registry(registry: dict, name: str, table: dict, built_in: frozenset) -> None:
    """Undo `add_to_registry` (the declaration too, unless it is a built-in one)."""
    registry.pop(name, None)
    if name not in built_in:
        table.pop(name, None)
