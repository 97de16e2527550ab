"""The front page for readers (`docs/results.md`): generated from small CSVs committed in `docs/data/`.

Two commands, so that no number in `docs/` is typed by hand:

- `advdefense-docs collect` copies what a finished run group made (its reproduction table, its autoencoder sweep,
  the topic tables: gathered over seeds where the group has several, and its jobs' cost from the benchmark files)
  into `docs/data/<group>/`, and records in `docs/data/manifest.json` what the group is (its role on the page,
  its data, its runs, the commit that made them).
- `advdefense-docs cross` writes a group's cross of classifiers and autoencoders (`autoencoder_cross.csv`) from the
  sweep tables of several runs, one sweep point per cell (issue 41: which of the two makes the recovery); `collect`
  keeps it.
- `advdefense-docs render` writes the page from `docs/data/` alone: first the side-by-side table of the paper's
  numbers and ours with the verdict (`advdefense.reproduction`), then the autoencoder sweep, then one section per
  topic. `advdefense-docs check` re-renders and fails on any difference (a test runs it on the committed files).

Torch-free: it reads CSV and JSON files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from .errors import PipelineFileError
from .plan.names import (
    AUTOENCODER_CROSS_TABLE,
    AUTOENCODER_SWEEP_BY_SIZE,
    AUTOENCODER_SWEEP_FIGURE,
    AUTOENCODER_SWEEP_TABLE,
)
from .reproduction import (
    BY_SIZE,
    SWEEP,
    RunFiles,
    _sweep_rows,
    read_table,
    render,
    render_by_size,
    render_cross,
    render_sweep,
)
from .seeds import mean_sd_markdown
from .sweep import parse_cross_cell, write_autoencoder_cross
from .tables import to_markdown

MANIFEST = "manifest.json"
REPRODUCTION = "reproduction.csv"
COST = "cost.csv"
ROLES = {  # a group's role -> its heading on the page
    "main": "The paper's setting",
    "positive_control": "The positive control: a defence known to work, through the same pipeline",
    "mini": "The mini run: 4 000 real CIFAR-10 training images, every stage on 2 CPU cores",
}
# (file in a group's data folder, where a run keeps it, section heading, what it shows): one section each
TOPICS = (
    (
        "summary.csv",
        "results/attacks/{run}/summary.csv",
        "Attacks",
        "Every attack at every epsilon: success rate over the attacked images, perturbation norms and speed.",
    ),
    (
        "table3_purification.csv",
        "results/tables/{run}/table3_purification.csv",
        "Purification (Table 3, every purifier)",
        "Accuracy on attacked images after each purifier, under the attack that ignores it and the adaptive attack "
        "run through it, and on clean images.",
    ),
    (
        "table4_detection.csv",
        "results/tables/{run}/table4_detection.csv",
        "Detection from the Glow latent (Table 4)",
        "The paper's detector per attack at its calibrated thresholds.",
    ),
    (
        "table5_comparison.csv",
        "results/tables/{run}/table5_comparison.csv",
        "Detection methods compared (Table 5)",
        "Every detector on the same images and thresholds, with the random-noise controls of the attack's size.",
    ),
    (
        "detection_defended.csv",
        "results/tables/{run}/detection_defended.csv",
        "Defended accuracy under attacks that know the detector",
        "Accuracy of classifier + detector when the attack targets both (penalty and orthogonal PGD, Square).",
    ),
    (
        "corruption_classifier.csv",
        "results/tables/{run}/corruption_classifier.csv",
        "Natural corruptions: the classifier",
        "Accuracy (%) on CIFAR-10-C's corruptions of the attacked test images, made here with the published "
        "parameters, per severity; `mean` over severities and corruptions (over all 15 x 5: RobustBench's "
        "corruptions accuracy); `clean`: the same images uncorrupted.",
    ),
    (
        "corruption_purifiers.csv",
        "results/tables/{run}/corruption_purifiers.csv",
        "Natural corruptions through each purifier",
        "Accuracy (%) through each purifier on the corrupted images (mean over severities, then per severity), and "
        "its change against the classifier alone (points): what purification costs, or gives, on images nobody "
        "attacked.",
    ),
    (
        "corruption_false_alarms.csv",
        "results/tables/{run}/corruption_false_alarms.csv",
        "Natural corruptions: every detector's false alarms",
        "Share (%) of corrupted clean images each detector (trained on all attacks pooled) flags at its calibrated "
        "threshold, beside the share of attacks it flags there and the FPR it realises on clean test images.",
    ),
)
SEED_TABLE = "results/seeds/{group}/tables/{table}"
# long topic tables shown on the page by a few rows (column, values kept); the CSV beside the page has them all
SHOWN_ROWS = {
    "corruption_purifiers.csv": ("corruption", ("mean", "clean")),
    "corruption_false_alarms.csv": ("corruption", ("mean",)),
}


# ----------------------------------------------------------------------------- collect
def job_cost(results: Path, runs: list[str]) -> pd.DataFrame:
    """Per rule: jobs, wall-clock seconds summed over the runs' benchmark files, and the largest resident
    memory (MB), from results/benchmarks/<rule>/...<run>... (Snakemake's `benchmark:` files)."""
    rows = []
    for rule_dir in sorted(p for p in (results / "benchmarks").iterdir() if p.is_dir()):
        seconds, peak, jobs = 0.0, 0.0, 0
        for tsv in rule_dir.rglob("*.tsv"):
            if not any(run in tsv.relative_to(rule_dir).parts or tsv.stem == run for run in runs):
                continue
            bench = pd.read_csv(tsv, sep="\t")
            seconds += float(bench["s"].iloc[-1])
            peak = max(peak, float(bench["max_rss"].iloc[-1]))
            jobs += 1
        if jobs:
            rows.append(
                {"rule": rule_dir.name, "jobs": jobs, "seconds": round(seconds, 1), "max_rss_mb": round(peak)}
            )
    table = pd.DataFrame(rows, columns=["rule", "jobs", "seconds", "max_rss_mb"])
    return table.sort_values("seconds", ascending=False, ignore_index=True)


PARTS = ("reproduction", "sweep", "topics", "cost")  # what `collect` can copy
KEPT = (AUTOENCODER_CROSS_TABLE,)  # what `collect` leaves in a group's folder (made by `cross`)


def collect(
    results,
    group: str,
    runs: list[str],
    role: str,
    data_label: str,
    out,
    commit: str = "",
    status: str = "",
    parts: tuple[str, ...] = PARTS,
    folder_name: str | None = None,
) -> list[Path]:
    """Copy what the runs of `group` made into `out/<group>/` (of `parts`, only what exists: the page shows what is
    there; a run still going is collected with the parts it has finished) and record the group in
    `out/manifest.json`. The group's earlier files there are replaced. Returns the files written."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {sorted(ROLES)}")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"parts {unknown} are not of {PARTS}")
    results, out = Path(results), Path(out)
    root = results.parent
    folder_name = folder_name or group  # the data set's name need not be a path of the repository
    folder = out / folder_name
    kept = {}  # what `cross` made from several runs' tables: not this run's to replace
    if folder.is_dir():
        kept = {name: (folder / name).read_bytes() for name in KEPT if (folder / name).is_file()}
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, content in kept.items():
        (folder / name).write_bytes(content)
    written = []

    def copy(source: Path, name: str):
        if source.is_file():
            shutil.copyfile(source, folder / name)
            written.append(folder / name)

    if "reproduction" in parts:
        copy(results / "reproduction" / group / REPRODUCTION, REPRODUCTION)
    for run in (
        runs if "sweep" in parts else []
    ):  # the first run's sweep that has one (one classifier held fixed)
        sweep = results / "tables" / run / AUTOENCODER_SWEEP_TABLE
        if sweep.is_file():
            copy(sweep, AUTOENCODER_SWEEP_TABLE)
            copy(results / "tables" / run / AUTOENCODER_SWEEP_BY_SIZE, AUTOENCODER_SWEEP_BY_SIZE)
            copy(results / "figures" / run / AUTOENCODER_SWEEP_FIGURE, AUTOENCODER_SWEEP_FIGURE)
            break
    for name, pattern, *_ in TOPICS if "topics" in parts else ():
        gathered = root / SEED_TABLE.format(group=group, table=name)
        if len(runs) > 1 and gathered.is_file():
            copy(gathered, name)
        elif len(runs) == 1:
            copy(root / pattern.format(run=runs[0]), name)
    cost = job_cost(results, runs) if "cost" in parts else pd.DataFrame()
    if len(cost):
        cost.to_csv(folder / COST, index=False)
        written.append(folder / COST)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"groups": []}
    manifest["groups"] = [g for g in manifest["groups"] if g["name"] != group]
    entry = {"name": group, "role": role, "data": data_label, "runs": list(runs), "commit": commit}
    if folder_name != group:
        entry["folder"] = folder_name
    if status:  # what is still to come for this group (said in words on the page)
        entry["status"] = status
    manifest["groups"].append(entry)
    manifest["groups"].sort(key=lambda g: list(ROLES).index(g["role"]))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return written


# ----------------------------------------------------------------------------- render
def read_manifest(data) -> dict:
    path = Path(data) / MANIFEST
    if not path.is_file():
        return {"groups": []}
    try:
        manifest = json.loads(path.read_text())
        for group in manifest["groups"]:
            for key in ("name", "role", "data", "runs"):
                group[key]  # noqa: B018 (each must be there)
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineFileError(f"{path}: not a front-page manifest ({exc!r})") from None
    return manifest


def _as_number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _table_markdown(path: Path, seeds: int) -> str:
    table = pd.read_csv(path)
    for column in table.select_dtypes(
        exclude="number"
    ).columns:  # numbers beside words ("did not train"): text
        table[column] = table[column].map(_as_number)
    if path.name in SHOWN_ROWS:
        column, values = SHOWN_ROWS[path.name]
        table = table[table[column].isin(values)].reset_index(drop=True)
    if seeds > 1 and any(c.endswith("_sd") for c in table.columns):
        text = mean_sd_markdown(table, "", list(range(seeds)), digits=2)
        return text.split("\n", 2)[2].strip()  # without its heading line (the section has one)
    return to_markdown(table.set_index(table.columns[0]), digits=2)


def _deeper(line: str) -> str:
    """A heading one level down (the reproduction page's sections sit inside a group's section here)."""
    return "#" + line if line.startswith("##") else line


def render_group(data: Path, group: dict) -> list[str]:
    folder = data / group.get("folder", group["name"])
    runs, seeds = group["runs"], len(group["runs"])
    lines = [
        f"## {ROLES[group['role']]}: {group['name']}",
        "",
        f"Data: {group['data']}; runs: {', '.join(runs)}"
        + (f"; made at commit {group['commit'][:12]}" if group.get("commit") else "")
        + f". Files: `docs/data/{group.get('folder', group['name'])}/`.",
        "",
    ]
    if group.get("status"):
        lines += [f"**Status:** {group['status']}", ""]
    reproduction = folder / REPRODUCTION
    has_sweep = False
    if reproduction.is_file():
        table = read_table(reproduction)
        has_sweep = bool((table["section"] == SWEEP).any())
        page = render(table, "", group["data"]).split("\n", 2)[2]  # its body, without its title
        lines += [_deeper(line) for line in page.strip().splitlines()] + [""]
    figure = folder / AUTOENCODER_SWEEP_FIGURE
    if figure.is_file():  # the workflow's own figure of the sweep (made from the same table)
        lines += [
            f"![The autoencoder sweep: recovery against clean accuracy, and against perturbation size]"
            f"(data/{group.get('folder', group['name'])}/{AUTOENCODER_SWEEP_FIGURE})",
            "",
        ]
    sweep = folder / AUTOENCODER_SWEEP_TABLE
    if sweep.is_file() and not has_sweep:  # a page made without the sweep: the sweep's own table
        by_size = folder / AUTOENCODER_SWEEP_BY_SIZE
        rows = _sweep_rows(
            RunFiles(Path(), Path(), sweep=sweep, sweep_by_size=by_size if by_size.is_file() else None),
            group["data"],
        )
        frame = pd.DataFrame([r.__dict__ for r in rows])
        lines += [_deeper(line) for line in render_sweep(frame[frame["section"] == SWEEP])]
        lines += [_deeper(line) for line in render_by_size(frame[frame["section"] == BY_SIZE])]
    cross = folder / AUTOENCODER_CROSS_TABLE
    if cross.is_file():
        lines += [_deeper(line) for line in render_cross(pd.read_csv(cross), group["data"])]
    for name, _pattern, heading, what in TOPICS:
        path = folder / name
        if path.is_file():
            gathered = " Mean ± sd over the seeds." if seeds > 1 else ""
            if name in SHOWN_ROWS:
                column, values = SHOWN_ROWS[name]
                gathered += (
                    f" Rows shown: {column} {' and '.join(values)}; every row is in "
                    f"`docs/data/{group.get('folder', group['name'])}/{name}`."
                )
            lines += [f"### {heading}", "", what + gathered, "", _table_markdown(path, seeds), ""]
    cost = folder / COST
    if cost.is_file():
        table = pd.read_csv(cost)
        hours = table["seconds"].sum() / 3600
        lines += [
            "### Scale and cost",
            "",
            f"Wall-clock time of the runs' jobs finished when this was collected, summed: {hours:.1f} h over "
            f"{int(table['jobs'].sum())} jobs (from Snakemake's benchmark files; jobs that ran side by side count "
            "each; a job resumed after an interruption counts its last execution only).",
            "",
            to_markdown(table.set_index("rule"), digits=1),
            "",
        ]
    return lines


def render_front_page(data) -> str:
    """The front page from the files of `data` (docs/data) alone."""
    data = Path(data)
    manifest = read_manifest(data)
    lines = [
        "# Does the paper hold up?",
        "",
        "This page is generated (`make docs`: `advdefense-docs render docs/data --out docs/results.md`) from the CSV "
        "files in `docs/data/`, which `advdefense-docs collect` copies from a finished run; a test fails when the "
        "page and its files disagree. Every number below comes from those files.",
        "",
    ]
    if not manifest["groups"]:
        lines += ["No run has been collected into `docs/data/` yet.", ""]
    for group in manifest["groups"]:
        lines += render_group(data, group)
    lines += [
        "## Notes",
        "",
        "How the project got here, issue by issue, is in `docs/notes/`; where it and this page differ, this page "
        "holds (it is made from the runs).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`advdefense-docs collect|render|check`: the front page from committed CSVs (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="advdefense-docs", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="copy a finished run group's small CSVs into the data folder")
    c.add_argument("--results", default="results")
    c.add_argument("--group", required=True)
    c.add_argument("--runs", nargs="+", required=True, help="the group's runs (one per seed)")
    c.add_argument("--role", choices=sorted(ROLES), default="main")
    c.add_argument("--data", required=True, help='what the images are, e.g. "CIFAR-10 (JPEG copy)"')
    c.add_argument("--commit", default="", help="the commit that made the runs")
    c.add_argument("--status", default="", help="what is still to come for this group, in words")
    c.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to copy (default: all)"
    )
    c.add_argument("--folder", help="its folder under the data folder (default: the group's name)")
    c.add_argument("--out", default="docs/data")
    x = sub.add_parser(
        "cross", help="write a group's cross of classifiers and autoencoders from sweep tables"
    )
    x.add_argument(
        "--cell",
        action="append",
        required=True,
        metavar="CLASSIFIER,AUTOENCODER=SWEEP_TABLE:POINT",
        help="one cell: the sweep point of a run whose classifier is CLASSIFIER (every pair once)",
    )
    x.add_argument("--folder", required=True, help="the group's folder under the data folder")
    x.add_argument("--out", default="docs/data")
    r = sub.add_parser("render", help="write the page from the data folder")
    r.add_argument("data", nargs="?", default="docs/data")
    r.add_argument("--out", help="write it here (default: print it)")
    k = sub.add_parser("check", help="fail when the page differs from what its data renders to")
    k.add_argument("data", nargs="?", default="docs/data")
    k.add_argument("page", nargs="?", default="docs/results.md")
    args = parser.parse_args(argv)
    if args.command == "collect":
        for path in collect(
            args.results,
            args.group,
            args.runs,
            args.role,
            args.data,
            args.out,
            args.commit,
            args.status,
            tuple(args.parts),
            args.folder,
        ):
            print(path)
        return 0
    if args.command == "cross":
        try:
            cells = [parse_cross_cell(text) for text in args.cell]
            path = Path(args.out) / args.folder / AUTOENCODER_CROSS_TABLE
            write_autoencoder_cross(cells, path)
        except (ValueError, PipelineFileError) as exc:
            print(f"advdefense-docs cross: {exc}", file=sys.stderr)
            return 2
        print(path)
        return 0
    page = render_front_page(args.data)
    if args.command == "render":
        if args.out:
            Path(args.out).write_text(page)
        else:
            sys.stdout.write(page)
        return 0
    if Path(args.page).read_text() != page:
        print(f"{args.page} differs from what {args.data} renders to: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
