"""Per-job wall time and peak memory of a finished run, per stage, against `advdefense-estimate`.

    python benchmarks/job_table.py WORKDIR CONFIG [CONFIG ...] [--jobs] [--wall SECONDS]

reads Snakemake's `benchmark:` files (WORKDIR/results/benchmarks/<rule>/...tsv: wall seconds `s` and peak
resident memory `max_rss` in MB of each job) and prints Markdown tables: per stage (jobs, summed wall time, the
longest job, the largest peak RSS, the estimate for the CONFIG files and the ratio measured / estimate) and, with
`--jobs`, per job. `--wall` adds the run's own wall time (one `snakemake` command) for comparison with the sum of
its jobs. Nothing here is timed: it reports what the run's own benchmark files say.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from advdefense.config import check_config_files  # noqa: E402
from advdefense.estimate import STAGE_RULES, estimate_seconds  # noqa: E402
from advdefense.progress import format_seconds  # noqa: E402


def read_benchmarks(workdir: Path) -> list[dict]:
    """One row per benchmark file: rule, job (the file's path below its rule), seconds, max_rss (MB)."""
    rows = []
    root = workdir / "results/benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        with path.open() as fh:
            records = list(csv.DictReader(fh, delimiter="\t"))
        if not records:
            continue
        last = records[-1]  # a benchmark file holds one line per repeat; the pipeline runs each job once
        rel = path.relative_to(root)
        rows.append(
            {
                "rule": rel.parts[0],
                "job": str(Path(*rel.parts[1:]).with_suffix("")),
                "seconds": float(last["s"]),
                "max_rss": float(last["max_rss"]),
            }
        )
    return rows


def stage_of(rule: str) -> str:
    for stage, rules in STAGE_RULES.items():
        if rule in rules:
            return stage
    return "other"


def stage_table(rows: list[dict], estimate: dict[str, float]) -> list[dict]:
    stages = []
    for stage in list(STAGE_RULES) + ["other"]:
        mine = [r for r in rows if stage_of(r["rule"]) == stage]
        if not mine and not estimate.get(stage):
            continue
        measured = sum(r["seconds"] for r in mine)
        est = estimate.get(stage, 0.0)
        stages.append(
            {
                "stage": stage,
                "jobs": len(mine),
                "measured_s": measured,
                "longest_job_s": max((r["seconds"] for r in mine), default=0.0),
                "peak_rss_mb": max((r["max_rss"] for r in mine), default=0.0),
                "estimate_s": est,
                "ratio": measured / est if est > 0 else float("nan"),
            }
        )
    return stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--jobs", action="store_true", help="also print one row per job")
    parser.add_argument("--wall", type=float, help="the run's own wall time in seconds")
    parser.add_argument("--cores", type=int, default=2, help="cores the estimate assumes (default 2)")
    parser.add_argument(
        "--csv", type=Path, help="also write the stage table (and each job, with --jobs) as CSV"
    )
    args = parser.parse_args(argv)
    rows = read_benchmarks(args.workdir)
    if not rows:
        print(f"no benchmark files under {args.workdir / 'results/benchmarks'}", file=sys.stderr)
        return 1
    estimate = estimate_seconds(check_config_files(args.configs), cores=args.cores)
    stages = stage_table(rows, estimate)
    print("| stage | jobs | wall time, summed | longest job | peak RSS | estimate | measured / estimate |")
    print("|---|---|---|---|---|---|---|")
    for s in stages:
        print(
            f"| {s['stage']} | {s['jobs']} | {format_seconds(s['measured_s'])} | {format_seconds(s['longest_job_s'])} "
            f"| {s['peak_rss_mb']:.0f} MB | {format_seconds(s['estimate_s'])} | {s['ratio']:.2f} |"
        )
    total = sum(s["measured_s"] for s in stages)
    est_total = sum(estimate.values())
    print(
        f"| **all** | {len(rows)} | {format_seconds(total)} | | {max(r['max_rss'] for r in rows):.0f} MB | "
        f"{format_seconds(est_total)} | {total / est_total:.2f} |"
    )
    if args.wall:
        print(
            f"\nwall time of the run: {format_seconds(args.wall)} ({args.wall:.0f} s); summed job time "
            f"{total:.0f} s"
        )
    if args.csv:
        import pandas as pd

        pd.DataFrame(stages).to_csv(args.csv, index=False, float_format="%.1f")
        if args.jobs:
            pd.DataFrame(rows).to_csv(
                args.csv.with_name(args.csv.stem + "-jobs.csv"), index=False, float_format="%.1f"
            )
    if args.jobs:
        print("\n| rule | job | wall time | peak RSS |")
        print("|---|---|---|---|")
        for r in sorted(rows, key=lambda r: (stage_of(r["rule"]), r["rule"], r["job"])):
            print(f"| {r['rule']} | {r['job']} | {r['seconds']:.1f} s | {r['max_rss']:.0f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
