"""The spec of a brought classifier's builder (`classifier.checkpoint.builder`): 'path/to/file.py:function' or
'module:function', checked before any job runs.

A file builder is read, not run, to check it defines the function (its code runs only in the import job, which
exports the model with torch.export); a module builder (e.g. torchvision.models:resnet18) is imported to check
that it names a Python function or nn.Module class, not a builtin such as os:system.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

from ..errors import ConfigError


def import_builder(spec: str):
    """The function named by "package.module:function" or "path/to/file.py:function"."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        raise ConfigError(
            f"classifier.checkpoint.builder: {spec!r} is not of the form 'module:function' "
            "or 'path/to/file.py:function'"
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"classifier.checkpoint.builder: file {path} does not exist")
            loader_spec = importlib.util.spec_from_file_location(f"advdefense_builder_{path.stem}", path)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"classifier.checkpoint.builder: cannot import {module_name} ({type(exc).__name__}: {exc})"
        ) from exc
    builder = getattr(module, function, None)
    if not callable(builder):
        raise ConfigError(f"classifier.checkpoint.builder: {module_name} has no function {function!r}")
    return builder


def builder_source(spec: str) -> Path | None:
    """The Python file that defines the builder `spec` ("path/to/file.py:function" or "module:function"), found
    without running it; None for a module without a source file."""
    module_name, _, _ = spec.rpartition(":")
    if module_name.endswith(".py"):
        return Path(module_name)
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    origin = getattr(found, "origin", None) if found is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def check_builder_spec(spec: str, key: str = "classifier.checkpoint.builder") -> None:
    """Before any job runs: `spec` is 'file.py:function' naming a function (or class) defined at the top level of
    an existing file (read, not run), or 'module:function' naming a Python function or nn.Module class of an
    importable module (e.g. torchvision.models:resnet18), not a builtin such as os:system."""
    module_name, sep, function = spec.rpartition(":")
    if not sep or not module_name or not function:
        raise ConfigError(
            f"{key}: {spec!r} is not of the form 'module:function' or 'path/to/file.py:function'"
        )
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ConfigError(f"{key}: file {path} does not exist")
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(
                f"{key}: {path} is not a readable Python file ({type(exc).__name__}: {exc})"
            ) from exc
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        if function not in defined:
            raise ConfigError(
                f"{key}: {path} defines no function {function!r} at its top level (it defines "
                f"{', '.join(sorted(defined)) or 'none'})"
            )
        return
    builder = import_builder(spec)  # a module of a model library: importing it loads torch anyway
    from torch import nn

    is_model_class = inspect.isclass(builder) and issubclass(builder, nn.Module)
    if not (inspect.isfunction(builder) or is_model_class):
        raise ConfigError(
            f"{key}: {spec} is a {type(builder).__name__}, not a Python function or nn.Module class "
            f"that builds a model"
        )
