"""Plug-in defences in files: one class in one file is all a Snakemake run needs (issue 24).

A plug-in file is a Python module in `src/advdefense/plugins/` or in a directory named by the environment variable
`ADVDEFENSE_PLUGINS` (several separated by `os.pathsep`). Each class in it decorated with the `register` of a
registry module (`advdefense.purifiers`, `advdefense.detectors`, `advdefense.robust_training`) is a defence of
that kind. Two readers, one source:

- the planning layer reads the file without running it (`read_plugin_file`, with `ast`): the class attributes
  that make its declaration (`name`, `title`, ... the fields of `PurifierSpec`, `DetectorSpec`, `TrainingSpec`)
  must be literals in the class body (or in a base class of the same file), so the DAG, the checks, the
  estimate and the tables know the defence without torch. The declaration's callable fields (`passes`,
  `fit_seconds`) take a number there (a constant);
- the jobs import the file (`load_plugin_modules`, from the end of each registry module), where `register`
  adds the class to its registry; a class whose attributes differ from what the file declares is an error.

A plug-in file is code the user put beside the pipeline's own code, imported as Snakemake imports the Snakefile;
no data file or config value names code to run.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import ConfigError

ENV = "ADVDEFENSE_PLUGINS"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "plugins"
# the registry module whose `register` makes a class a defence of that kind
KIND_MODULES = {
    "advdefense.purifiers": "purifier",
    "advdefense.detectors": "detector",
    "advdefense.robust_training": "training method",
    "advdefense.attack_methods": "attack family",
}
# declaration fields that are functions in the built-ins; a plug-in file gives a number (a constant)
CALLABLE_FIELDS = ("passes", "fit_seconds")


class PluginError(ConfigError):
    """A plug-in file that cannot be read as a declaration (names the file, the line and the class)."""


@dataclass(frozen=True)
class PluginClass:
    """One registered class of a plug-in file, as the file declares it."""

    kind: str  # a value of KIND_MODULES
    class_name: str
    attributes: dict  # its literal class attributes (its same-file bases' first)
    path: Path
    line: int

    def where(self) -> str:
        return f"plug-in {self.path}:{self.line}, class {self.class_name}"


def plugin_dirs() -> list[Path]:
    """The package's `plugins/` directory, then each directory of $ADVDEFENSE_PLUGINS (one that does not exist is an
    error naming the variable)."""
    dirs = [PACKAGE_DIR]
    for entry in filter(None, os.environ.get(ENV, "").split(os.pathsep)):
        path = Path(entry).resolve()
        if not path.is_dir():
            raise PluginError(f"${ENV}: {entry!r} is not a directory")
        dirs.append(path)
    return dirs


def plugin_files() -> list[Path]:
    """Every plug-in file: the `*.py` files (not starting with `_`) of `plugin_dirs()`, sorted by name per directory."""
    return [
        f for d in plugin_dirs() if d.is_dir() for f in sorted(d.glob("*.py")) if not f.name.startswith("_")
    ]


def _register_kinds(tree: ast.Module) -> dict[str, str]:
    """{name used as a decorator: kind} from the module's imports of the registry modules: `from
    advdefense.purifiers import register [as r]` gives {"register"/"r": "purifier"}, `from advdefense import
    purifiers [as p]` or `import advdefense.purifiers as p` gives {"purifiers.register"/"p.register": ...}."""
    kinds = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in KIND_MODULES:
            for alias in node.names:
                if alias.name == "register":
                    kinds[alias.asname or alias.name] = KIND_MODULES[node.module]
        elif isinstance(node, ast.ImportFrom) and node.module == "advdefense":
            for alias in node.names:
                kind = KIND_MODULES.get(f"advdefense.{alias.name}")
                if kind:
                    kinds[f"{alias.asname or alias.name}.register"] = kind
        elif isinstance(node, ast.Import):
            for alias in node.names:
                kind = KIND_MODULES.get(alias.name)
                if kind:
                    kinds[f"{alias.asname or alias.name}.register"] = kind
    return kinds


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _literal(node: ast.expr, path: Path, class_name: str, attribute: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise PluginError(
            f"plug-in {path}:{node.lineno}, class {class_name}: attribute {attribute!r} is not a literal "
            f"({ast.unparse(node)!r}); the DAG reads a plug-in's declaration without running it, so it must be a "
            "literal (a string, number, tuple, list, dict, True/False/None)"
        ) from None


def _class_attributes(node: ast.ClassDef, path: Path, declared: set[str]) -> dict:
    """The literal class attributes of `node` among `declared` (assignments, tuple assignments, annotated ones);
    a function in the body named like a declared field is an error (the DAG cannot read it)."""
    found = {}
    for stmt in node.body:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                if isinstance(target, ast.Name) and target.id in declared:
                    found[target.id] = _literal(stmt.value, path, node.name, target.id)
                elif isinstance(target, ast.Tuple):
                    names = [t.id if isinstance(t, ast.Name) else None for t in target.elts]
                    if not set(names) & declared:
                        continue
                    if not isinstance(stmt.value, ast.Tuple) or len(stmt.value.elts) != len(names):
                        raise PluginError(
                            f"plug-in {path}:{stmt.lineno}, class {node.name}: unpack the declaration "
                            f"{', '.join(n or '?' for n in names)} from a tuple of literals of the same length"
                        )
                    for name, value in zip(names, stmt.value.elts):
                        if name in declared:
                            found[name] = _literal(value, path, node.name, name)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            if stmt.target.id in declared:
                found[stmt.target.id] = _literal(stmt.value, path, node.name, stmt.target.id)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in declared:
            raise PluginError(
                f"plug-in {path}:{stmt.lineno}, class {node.name}: {stmt.name!r} is a function; in a plug-in file "
                f"it is a number (the constant the estimate uses), so that the DAG can read it without torch"
            )
    return found


def read_plugin_file(path: Path, declared: dict[str, set[str]]) -> list[PluginClass]:
    """The registered classes of one plug-in file with their literal declarations, without running it.
    `declared` maps each kind to the names of its declaration's fields."""
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as err:
        raise PluginError(f"plug-in {path}:{err.lineno}: not valid Python ({err.msg})") from None
    kinds = _register_kinds(tree)
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    found = []
    for node in classes.values():
        decorators = {_dotted(d) for d in node.decorator_list}
        node_kinds = {kinds[d] for d in decorators if d in kinds}
        if not node_kinds:
            continue
        if len(node_kinds) > 1:
            raise PluginError(
                f"plug-in {path}:{node.lineno}, class {node.name}: registered as {sorted(node_kinds)}"
            )
        kind = node_kinds.pop()
        attributes: dict = {}
        for base in _same_file_bases(node, classes):  # the furthest base first: nearer ones override
            attributes.update(_class_attributes(base, path, declared[kind]))
        attributes.update(_class_attributes(node, path, declared[kind]))
        for key in ("name", "title"):
            if not isinstance(attributes.get(key), str):
                raise PluginError(
                    f"plug-in {path}:{node.lineno}, class {node.name}: no {key!r} (a string class attribute)"
                )
        found.append(PluginClass(kind, node.name, attributes, path, node.lineno))
    return found


def _same_file_bases(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> list[ast.ClassDef]:
    chain, seen = [], {node.name}
    current = node
    while True:
        names = [
            b.id for b in current.bases if isinstance(b, ast.Name) and b.id in classes and b.id not in seen
        ]
        if not names:
            return chain[::-1]
        current = classes[names[0]]
        seen.add(current.name)
        chain.append(current)


def _constant(value: float):
    def constant(*_args) -> float:
        return float(value)

    return constant


def spec_from_attributes(spec_type, attributes: dict, where: str):
    """`spec_type` made of a plug-in's attributes (a number for a callable field becomes a constant); a value the
    declaration refuses is an error naming `where`."""
    values = dict(attributes)
    for key in CALLABLE_FIELDS:
        if isinstance(values.get(key), (int, float)) and not isinstance(values[key], bool):
            values[key] = _constant(values[key])
    for key in (
        "needs",
        "classes",
        "params",
        "norms",
    ):  # the declarations' tuples, written as lists or tuples
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    try:
        return spec_type(**{f.name: values[f.name] for f in fields(spec_type) if f.name in values})
    except (TypeError, ValueError) as err:
        raise PluginError(f"{where}: {err}") from None


# (kind, name) -> the plug-in class whose file declared it (`declare_plugins`): `register` checks the class
FILE_DECLARED: dict[tuple[str, str], PluginClass] = {}


def declare_plugins(tables: dict[str, tuple[dict, type]]) -> list[PluginClass]:
    """Add the declaration of every class of every plug-in file to its kind's table (`tables`: kind ->
    (table, spec type)); a name taken by a built-in or by another plug-in is an error naming both."""
    declared = {kind: {f.name for f in fields(spec_type)} for kind, (_, spec_type) in tables.items()}
    classes = [c for path in plugin_files() for c in read_plugin_file(path, declared)]
    origin: dict[tuple[str, str], str] = {}
    for plugin in classes:
        table, spec_type = tables[plugin.kind]
        spec = spec_from_attributes(spec_type, plugin.attributes, plugin.where())
        key = (plugin.kind, spec.name)
        if spec.name in table:  # (the tables hold the built-ins and the plug-ins declared before this one)
            other = origin.get(key, "a built-in one")
            raise PluginError(f"{plugin.where()}: {plugin.kind} {spec.name!r} is declared already ({other})")
        origin[key] = plugin.where()
        table[spec.name] = spec
        FILE_DECLARED[key] = plugin
    return classes


def check_against_file(cls, spec, spec_type) -> None:
    """At `register`: the declaration made of `cls`'s attributes at run time must be what its plug-in file
    declares (`spec`), field by field (an attribute computed at run time, or inherited from a class of another
    file, would make the DAG and the job disagree)."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    attributes = {f.name: getattr(cls, f.name) for f in fields(spec_type) if hasattr(cls, f.name)}
    imported = spec_from_attributes(spec_type, attributes, where)
    for f in fields(spec_type):
        if f.name in CALLABLE_FIELDS:
            continue
        if getattr(imported, f.name) != getattr(spec, f.name):
            raise PluginError(
                f"{where}: {f.name} is {getattr(imported, f.name)!r} when imported but its plug-in file declares "
                f"{getattr(spec, f.name)!r}; give it as a literal in the class body"
            )


_loaded: set[Path] = set()


def load_plugin_modules() -> None:
    """Import every plug-in file once (their classes register themselves); from the end of each registry module."""
    for path in plugin_files():
        if path in _loaded:
            continue
        _loaded.add(path)
        name = (
            f"advdefense.plugins.{path.stem}"
            if path.parent == PACKAGE_DIR
            else f"advdefense_plugin_{path.stem}"
        )
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
