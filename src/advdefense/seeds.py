"""Gathering runs: `seeds` (the tables of every run of a group gathered cell by cell into the mean and standard
deviation over seeds) and a list `classifier.training` (each group's table side by side, a block per method)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PipelineFileError
from .h5io import atomic_path
from .plan.training_specs import training_title
from .tables import OBJECTIVE_CURVE, TRAMER_FLAG, format_cell, to_markdown

# columns of the pipeline's tables that describe a row rather than label it (an attack's warnings, the
# detector-aware attack's objective curve and Tramer flag): where the runs differ, the gathered cell says what
# each seed said; every other text column must agree between runs
FREE_TEXT = ("warnings", OBJECTIVE_CURVE, TRAMER_FLAG)


def gather_over_seeds(paths: list, seeds: list[int]) -> pd.DataFrame:
    """One table from the same table of each run (`paths`, one per seed, in the order of `seeds`), column by
    column: a column alike in every run stays as it is; a flag (True/False) that differs becomes the share of
    seeds where it holds; numbers that differ become their mean over seeds, with `<column>_sd` (sample standard
    deviation over the seeds that have a number) beside it. A cell that holds a word instead of a number in some
    seeds (a detector that "did not train") counts in none of them, and `<column>_note` says in how many seeds
    it held which word. Rows and labels must agree. `seeds` counts the runs each row gathers."""
    if len(paths) != len(seeds) or not paths:
        raise ValueError(f"{len(paths)} tables for {len(seeds)} seeds")
    frames = [pd.read_csv(p) for p in paths]
    first = frames[0]
    for path, frame in zip(paths[1:], frames[1:]):
        if list(frame.columns) != list(first.columns) or len(frame) != len(first):
            raise PipelineFileError(
                f"{path}: its rows or columns differ from {paths[0]} ({len(frame)} x "
                f"{len(frame.columns)} against {len(first)} x {len(first.columns)}); the runs "
                f"of one configuration make tables of one shape"
            )
    out = {}
    for column in first.columns:
        out.update(_gather_column(column, [f[column] for f in frames], paths))
    table = pd.DataFrame(out)
    table.insert(len(table.columns), "seeds", len(seeds))
    return table


def _gather_column(column: str, cells: list[pd.Series], paths: list) -> dict:
    """{name: values} that one column of every run's table becomes (see `gather_over_seeds`)."""
    text = [c.astype(str) for c in cells]
    if all(t.equals(text[0]) for t in text):
        return {column: cells[0]}
    if all(t.isin(["True", "False"]).all() for t in text):
        return {column: np.mean([t == "True" for t in text], axis=0)}
    if column in FREE_TEXT:
        return {column: [_per_seed([c.iloc[row] for c in cells]) for row in range(len(cells[0]))]}
    numbers = [pd.to_numeric(c, errors="coerce") for c in cells]
    values = np.stack([n.to_numpy(dtype=float) for n in numbers])
    # per seed and row: the word where a cell holds text instead of a number, else ""
    words = np.stack([t.where(n.isna() & c.notna(), "").to_numpy() for t, n, c in zip(text, numbers, cells)])
    for row in range(words.shape[1]):
        said = set(words[:, row]) - {""}
        blank = (words[:, row] == "") & np.isnan(values[:, row])  # neither a word nor a number
        if len(said) > 1 or (said and blank.any()):
            seed = next(k for k in range(1, len(cells)) if text[k].iloc[row] != text[0].iloc[row])
            raise PipelineFileError(
                f"{paths[seed]}: column {column!r} differs from {paths[0]}'s in row {row} "
                f"({text[seed].iloc[row]!r} against {text[0].iloc[row]!r}); the runs of one "
                f"configuration label their rows alike"
            )
    with np.errstate(invalid="ignore", divide="ignore"):
        counts = np.sum(~np.isnan(values), axis=0)
        mean = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)
        sd = np.sqrt(
            np.where(counts > 1, np.nansum((values - mean) ** 2, axis=0) / np.maximum(counts - 1, 1), np.nan)
        )
    out = {column: mean, f"{column}_sd": sd}
    if words.any():
        n = len(cells)
        out[f"{column}_note"] = [
            next((f"{w} in {int((words[:, r] == w).sum())} of {n} seeds" for w in words[:, r] if w), "")
            for r in range(words.shape[1])
        ]
    return out


def _per_seed(values: list) -> str:
    """What the seeds (by position) said in one cell of a free-text column, e.g. 'seeds 0, 2: x; seed 1: y'."""
    said: dict[str, list[int]] = {}
    for k, v in enumerate(values):
        if isinstance(v, str) and v:
            said.setdefault(v, []).append(k)
    return "; ".join(
        f"seed{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}: {v}" for v, ks in said.items()
    )


def mean_sd_markdown(table: pd.DataFrame, title: str, seeds: list[int], digits: int = 3) -> str:
    """The gathered table with `mean ± sd` cells (and the note of a cell that some seeds could not fill)."""
    extra = ("_sd", "_note")
    shown = [c for c in table.columns if not c.endswith(extra) and c != "seeds"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for _, row in table.iterrows():
        cells = []
        for c in shown:
            note = row.get(f"{c}_note") or ""
            if f"{c}_sd" not in table.columns:
                cells.append(format_cell(row[c], digits))
            elif np.isnan(float(row[c])):
                cells.append(note or "–")
            else:
                cell = f"{format_cell(float(row[c]), digits)} ± {format_cell(float(row[f'{c}_sd']), digits)}"
                cells.append(f"{cell} ({note})" if note else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"## {title}: mean ± sd over {len(seeds)} seeds ({', '.join(map(str, seeds))})\n\n"
        + "\n".join(lines)
        + "\n"
    )


def write_seed_table(paths: list, seeds: list[int], csv_path, md_path) -> pd.DataFrame:
    table = gather_over_seeds(paths, seeds)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(mean_sd_markdown(table, Path(csv_path).stem, seeds))
    return table


def gather_side_by_side(paths: dict[str, str | Path], methods: dict[str, str]) -> pd.DataFrame:
    """One table from the same table of each group of runs (`paths`: {group: its table, gathered over seeds or
    a single run's}), one block of rows per group, in the order given, led by the columns `classifier` (the
    training method's title) and `training` (its name; `methods`: {group: method}). Where a column varied over
    the seeds of one group only, the others' `<column>_sd` is 0 (their seeds agreed)."""
    frames = []
    for group, table_path in paths.items():
        frame = pd.read_csv(table_path)
        frame.insert(0, "training", methods[group])
        frame.insert(0, "classifier", training_title(methods[group]))
        frames.append(frame)
    columns = list(frames[0].columns)
    for frame in frames[1:]:
        columns += [c for c in frame.columns if c not in columns]
    table = pd.concat(frames, ignore_index=True)[columns]
    for column in [c for c in columns if c.endswith("_sd")]:
        value = pd.to_numeric(table[column[: -len("_sd")]], errors="coerce")
        table.loc[table[column].isna() & value.notna(), column] = 0.0
    return table


def write_side_by_side(
    paths: dict, methods: dict, seeds: list[int] | None, csv_path, md_path
) -> pd.DataFrame:
    table = gather_side_by_side(paths, methods)
    title = f"{Path(csv_path).stem}: {', '.join(training_title(m) for m in methods.values())} side by side"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    text = mean_sd_markdown(table, title, seeds) if seeds else f"## {title}\n\n{to_markdown(table, 3)}\n"
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(text)
    return table
