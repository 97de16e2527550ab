"""Issue 45: docs/results.md is generated from committed CSVs (docs/data/), and a test fails on any drift."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

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


def _sweep_table(path: Path, clean_without: float, points: dict[str, float]) -> Path:
    """A sweep table as the workflow writes it, one row per point with its overall recovery."""
    rows = []
    for k, (point, recovery) in enumerate(points.items()):
        rows.append(
            {
                "point": point,
                "purifier": f"autoencoder.{point}",
                "source": "brought",
                "widths": "32x16" if k else "32x64",
                "code_values": 1024 if k else 4096,
                "code_fraction": 0.33,
                "noise_std": 0.0 if k else 0.025,
                "epochs": 20,
                "test_psnr": 30.0,
                "clean_accuracy": clean_without - 3 - k,
                "clean_accuracy_without": clean_without,
                "clean_images": 2000,
                **{f"recovery_{a}": recovery for a in ("fgsm", "pgd", "deepfool")},
                **{f"successful_{a}": 1000 for a in ("fgsm", "pgd", "deepfool")},
                "recovery_overall": recovery,
                "successful_overall": 3000,
                "adaptive_attack": "pgd (eps=0.02)",
                "adaptive_accuracy": 0.5,
                "adaptive_images": 500,
            }
        )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_cross_separates_classifier_and_autoencoder(tmp_path, capsys):
    """Issue 41 item 3: `advdefense-docs cross` builds the 2 x 2 table from two runs' sweep tables, the page shows
    every cell and the two effects computed from them, `collect` keeps it, and a cross that mixes classifiers or
    misses a cell is refused by name."""
    from advdefense.sweep import autoencoder_cross

    full = _sweep_table(tmp_path / "full.csv", 88.0, {"mini_ae": 40.0, "code1024": 25.0})
    mini = _sweep_table(tmp_path / "mini.csv", 71.0, {"mini_ae": 30.0, "full_ae": 20.0})
    data = tmp_path / "data"
    cells = [
        f"mini,mini={mini}:mini_ae",
        f"mini,full-size={mini}:full_ae",
        f"full-size,mini={full}:mini_ae",
        f"full-size,full-size={full}:code1024",
    ]
    args = ["cross", "--folder", "g", "--out", str(data)]
    assert main([*args, *(x for c in cells for x in ("--cell", c))]) == 0
    cross = pd.read_csv(data / "g" / "autoencoder_cross.csv")
    assert list(zip(cross["classifier"], cross["autoencoder"], cross["recovery_overall"])) == [
        ("mini", "mini", 30.0),
        ("mini", "full-size", 20.0),
        ("full-size", "mini", 40.0),
        ("full-size", "full-size", 25.0),
    ]
    (data / MANIFEST).write_text(
        '{"groups": [{"name": "g", "role": "main", "data": "JPEG copy", "runs": ["r"]}]}\n'
    )
    page = render_front_page(data)
    section = page.split("### Classifier and autoencoder apart: the cross")[1]
    assert "| mini (71.0 %) | 30.0 % (" in section and "| full-size (88.0 %) | 40.0 % (" in section
    assert "widths 32x64, code 4096 values, noise 0.025, 20 epochs" in section
    # autoencoder full-size instead of mini: -10 (mini classifier), -15 (full-size); classifier: +10, +5
    assert "-10.0, -15.0 points of recovery" in section and "+10.0, +5.0 points" in section
    assert "12.5 points for the autoencoder, 7.5 for the classifier: the autoencoder makes more" in section

    # collect (a run's own files) keeps the cross, which it did not make
    collect(tmp_path / "no-results", "g", ["r"], "main", "JPEG copy", data, parts=(), folder_name="g")
    assert (data / "g" / "autoencoder_cross.csv").is_file()

    # refused by name: a missing point, a cell twice, a cell missing, two classifiers under one name
    assert main([*args, "--cell", f"mini,mini={mini}:nope", "--cell", f"mini,full-size={mini}:full_ae"]) == 2
    assert "no sweep point 'nope'" in capsys.readouterr().err
    assert main([*args, "--cell", "mini,mini"]) == 2
    assert "CLASSIFIER,AUTOENCODER=SWEEP_TABLE:POINT" in capsys.readouterr().err
    with pytest.raises(ValueError, match="given twice"):
        autoencoder_cross([("a", "b", mini, "mini_ae"), ("a", "b", mini, "full_ae")])
    with pytest.raises(ValueError, match="every classifier"):
        autoencoder_cross(
            [("a", "x", mini, "mini_ae"), ("a", "y", mini, "full_ae"), ("b", "x", full, "mini_ae")]
        )
    with pytest.raises(ValueError, match="not the same classifier on the same test images"):
        autoencoder_cross(
            [
                ("a", "x", mini, "mini_ae"),
                ("a", "y", full, "code1024"),
                ("b", "x", full, "mini_ae"),
                ("b", "y", full, "code1024"),
            ]
        )
