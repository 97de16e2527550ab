"""The one way a defence class gets its declaration (torch-free): a built-in class takes the one declared in its
kind's table (`plan.DETECTORS`, `plan.TRAININGS`); a class defined elsewhere (a plug-in, a test's toy) declares
itself by its class attributes, and its declaration joins that table."""

from __future__ import annotations

from dataclasses import fields


def declaration_of(cls, declared: dict, spec_type):
    """`declared[cls.name]`, or a new `spec_type` made of the class's attributes (added to `declared`)."""
    spec = declared.get(cls.name)
    if spec is None:
        spec = spec_type(**{f.name: getattr(cls, f.name) for f in fields(spec_type) if hasattr(cls, f.name)})
        declared[spec.name] = spec
    return spec
