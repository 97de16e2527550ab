"""`seeds`: the tables of every run gathered cell by cell into the mean and standard deviation over seeds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import PipelineFileError
from .h5io import atomic_path
from .tables import _fmt


def gather_over_seeds(paths: list, seeds: list[int]) -> pd.DataFrame:
    """One table from the same table of each run (`paths`, one per seed, in the order of `seeds`): the rows and
    text cells must agree; a numeric column that differs between seeds becomes its mean, with `<column>_sd` (the
    sample standard deviation over seeds, NaN-aware) beside it; one that agrees stays as it is. `seeds` counts
    the runs each row gathers."""
    if len(paths) != len(seeds) or not paths:
        raise ValueError(f"{len(paths)} tables for {len(seeds)} seeds")
    frames = [pd.read_csv(p) for p in paths]
    first = frames[0]
    for path, frame in zip(paths[1:], frames[1:]):
        if list(frame.columns) != list(first.columns) or len(frame) != len(first):
            raise PipelineFileError(f"{path}: its rows or columns differ from {paths[0]} ({len(frame)} x "
                                    f"{len(frame.columns)} against {len(first)} x {len(first.columns)}); the runs "
                                    f"of one configuration make tables of one shape")
    out = {}
    for column in first.columns:
        numeric = all(pd.api.types.is_numeric_dtype(f[column]) and not pd.api.types.is_bool_dtype(f[column])
                      for f in frames)
        if not numeric:
            for path, frame in zip(paths[1:], frames[1:]):
                if not frame[column].astype(str).equals(first[column].astype(str)):
                    if all(f[column].astype(str).isin(["True", "False"]).all() for f in frames):
                        break  # a flag (e.g. "trained") may differ between seeds: the share that is True
                    raise PipelineFileError(f"{path}: column {column!r} differs from {paths[0]}'s; the runs of one "
                                            f"configuration label their rows alike")
            else:
                out[column] = first[column]
                continue
            out[column] = np.mean([f[column].astype(str) == "True" for f in frames], axis=0)
            continue
        values = np.stack([f[column].to_numpy(dtype=float) for f in frames])
        same = np.all((values == values[0]) | (np.isnan(values) & np.isnan(values[0])), axis=0)
        if same.all():
            out[column] = first[column]
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            counts = np.sum(~np.isnan(values), axis=0)
            mean = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)
            sd = np.sqrt(np.where(counts > 1, np.nansum((values - mean) ** 2, axis=0) / np.maximum(counts - 1, 1),
                                  np.nan))
        out[column] = mean
        out[f"{column}_sd"] = sd
    table = pd.DataFrame(out)
    table.insert(len(table.columns), "seeds", len(seeds))
    return table


def mean_sd_markdown(table: pd.DataFrame, title: str, seeds: list[int], digits: int = 3) -> str:
    """The gathered table with `mean ± sd` cells."""
    shown = [c for c in table.columns if not c.endswith("_sd") and c != "seeds"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "|".join("---" for _ in shown) + "|"]
    for _, row in table.iterrows():
        cells = []
        for c in shown:
            if f"{c}_sd" in table.columns:
                cells.append(f"{_fmt(float(row[c]), digits)} ± {_fmt(float(row[f'{c}_sd']), digits)}")
            else:
                cells.append(_fmt(row[c], digits))
        lines.append("| " + " | ".join(cells) + " |")
    return (f"## {title}: mean ± sd over {len(seeds)} seeds ({', '.join(map(str, seeds))})\n\n"
            + "\n".join(lines) + "\n")


def write_seed_table(paths: list, seeds: list[int], csv_path, md_path) -> pd.DataFrame:
    table = gather_over_seeds(paths, seeds)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(mean_sd_markdown(table, Path(csv_path).stem, seeds))
    return table
