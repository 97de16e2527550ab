"""Writing result tables as CSV (full precision) and Markdown (rounded, with a caption and notes)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .h5io import atomic_path


def _fmt(value, digits: int) -> str:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if value.is_integer() and abs(value) >= 1000:
            return str(int(value))
        return f"{value:.{digits}f}"
    return str(value)


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    frame = table.reset_index() if table.index.name or not isinstance(table.index, pd.RangeIndex) else table
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def write_table(table: pd.DataFrame, csv_path, md_path, title: str, notes: list[str] | None = None,
                digits: int = 2) -> None:
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp)
    text = f"## {title}\n\n{to_markdown(table, digits)}\n"
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(text)
