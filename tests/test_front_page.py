"""Issue 45: docs/results.md is generated from committed CSVs (docs/data/), and a test fails on any drift."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd

from advdefense.front_page import (
    COST,
    MANIFEST,
    REPRODUCTION,
    TOPICS,
    collect,
    main,
    read_manifest,
    render_front_page,
)
from advdefense.reproduction import read_table
from conftest import REPO

DOCS = REPO / "docs"


def test_the_committed_front_page_is_what_its_committed_files_render_to():
    """The drift test: edit a CSV in docs/data/ or the page by hand, and this fails (`make docs` mends it)."""
    assert (DOCS / "results.md").read_text() == render_front_page(DOCS / "data")
    assert main(["check", str(DOCS / "data"), str(DOCS / "results.md")]) == 0
    for group in read_manifest(DOCS / "data")["groups"]:  # every group it names has its folder
        assert (DOCS / "data" / group.get("folder", group["name"])).is_dir()


def test_no_number_in_docs_is_typed_by_hand():
    """Outside the generated page and its data, docs/ holds prose and code only: no measured number (a
    percentage, a decimal) in a markdown file."""
    measured = re.compile(r"\d+(\.\d+)?\s*%|\b\d+\.\d+\b")
    for path in DOCS.rglob("*.md"):
        if path == DOCS / "results.md":
            continue
        hits = measured.findall(path.read_text())
        assert not hits, f"{path.relative_to(REPO)} has numbers typed by hand: {hits[:5]}"


def test_collect_copies_a_finished_run_and_the_page_holds_its_numbers(smoke_run, tmp_path):
    run = Path(
        shutil.copytree(smoke_run, tmp_path / "run", symlinks=True, ignore=shutil.ignore_patterns("*.h5"))
    )
    data = tmp_path / "data"
    written = collect(
        run / "results",
        "synthetic-smoke",
        ["synthetic-smoke"],
        "main",
        "synthetic data",
        data,
        "abc",
        "more to come",
    )
    folder = data / "synthetic-smoke"
    # byte for byte what the run made
    assert (folder / REPRODUCTION).read_bytes() == (
        run / "results/reproduction/synthetic-smoke/reproduction.csv"
    ).read_bytes()
    for name, pattern, *_ in TOPICS:
        assert (folder / name).read_bytes() == (run / pattern.format(run="synthetic-smoke")).read_bytes()
    cost = pd.read_csv(folder / COST)
    benchmarks = [
        p
        for p in (run / "results/benchmarks").rglob("*.tsv")
        if "synthetic-smoke" in str(p.relative_to(run / "results/benchmarks"))
    ]
    assert cost["jobs"].sum() == len(benchmarks)  # every job of the run has its benchmark file
    assert set(written) == {*folder.iterdir()}
    assert read_manifest(data)["groups"] == [
        {
            "name": "synthetic-smoke",
            "role": "main",
            "data": "synthetic data",
            "runs": ["synthetic-smoke"],
            "commit": "abc",
            "status": "more to come",
        }
    ]

    page = render_front_page(data)
    table = read_table(folder / REPRODUCTION)
    for _, row in table.iterrows():  # every quantity of the reproduction table, with our number as rendered
        assert f"| {row['quantity']} |" in page
    assert "## The paper's setting: synthetic-smoke" in page and "**Status:** more to come" in page
    for _, _, heading, _ in TOPICS:
        assert f"### {heading}" in page
    hours = cost["seconds"].sum() / 3600
    assert f"summed: {hours:.1f} h over {int(cost['jobs'].sum())} jobs" in page
    assert "autoencoder_sweep.png" not in page  # the smoke run has no sweep
    # a long table shows its summary rows (every detector's mean false-alarm rate), the CSV keeps every row
    alarms = pd.read_csv(folder / "corruption_false_alarms.csv")
    section = page.split("### Natural corruptions: every detector's false alarms")[1].split("###")[0]
    assert section.count("\n| ") == 1 + (alarms["corruption"] == "mean").sum() < 1 + len(alarms)

    # drift: one cell edited by hand, and the check fails until the page is rendered again
    out = tmp_path / "results.md"
    assert main(["render", str(data), "--out", str(out)]) == 0
    assert main(["check", str(data), str(out)]) == 0
    summary = pd.read_csv(folder / "summary.csv")
    summary.loc[0, "success_rate"] = 0.123456
    summary.to_csv(folder / "summary.csv", index=False)
    assert main(["check", str(data), str(out)]) == 1
    # a part at a time (a run still going): only that part, the group's earlier files gone
    collect(
        run / "results",
        "synthetic-smoke",
        ["synthetic-smoke"],
        "main",
        "synthetic data",
        data,
        parts=("topics",),
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(name for name, *_ in TOPICS)
    # collecting the group again replaces its entry instead of adding a second
    collect(run / "results", "synthetic-smoke", ["synthetic-smoke"], "main", "synthetic data", data)
    assert len(read_manifest(data)["groups"]) == 1
    assert (data / MANIFEST).is_file()


def test_the_readme_layout_names_every_module():
    """A new developer reads the layout first: every module of the package is in it."""
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Outputs")]
    package = REPO / "src/advdefense"
    missing = [
        str(p.relative_to(package))
        for p in sorted(package.rglob("*.py"))
        if p.name != "__init__.py" and "plugins" not in p.parts and p.name not in layout
    ]
    assert not missing, f"README.md, Layout: no word on {missing}"
