"""A detector added in this test module alone (issue 24): registered with `@register`, it is validated, priced,
fitted, calibrated, evaluated and attacked by the detector-aware attack through the same stage functions as the
built-in ones, and shows up in Table 5 and the defended-accuracy table (Table 4 and the generalisation matrix are
the paper's detector's) under its own title, next to the smoke run's detectors, without another edit. (The purifier newcomer: tests/test_purifiers.py.)"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import torch.nn.functional as F

from advdefense.config import load_yaml, validate_config
from advdefense.detection import run_detection_stage
from advdefense.detectors import Detector, register, unregister
from advdefense.plan import decisions
from advdefense.plan.detector_specs import DETECTORS
from advdefense.plan.jobs import detection_job
from advdefense.plan.names import ATTACK, attack_key, path
from advdefense.tables import write_detection_tables
from conftest import REPO

D = "synthetic-smoke"


class HighFrequency(Detector):
    """A toy: the mean absolute difference between an image and its 3 x 3 box blur (adversarial noise is high
    frequency); no parameters, differentiable, so the detector-aware attack targets it."""

    name, title = "toy_high_frequency", "Toy high-frequency energy"

    def torch_scorer(self):
        def score(x):
            blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
            return (x - blurred).abs().flatten(1).mean(1)

        return score


def test_a_detector_added_in_a_test_module_appears_in_every_detection_table(smoke_run, tmp_path):
    register(HighFrequency)
    try:
        cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
        assert cfg["detection"]["methods"][-1] == "toy_high_frequency"  # methods: null: every registered one
        assert "toy_high_frequency" in decisions.aware_methods(
            cfg
        )  # differentiable: the aware attack targets it
        results = smoke_run / "results"
        # the job the detect rule would give it (the same function builds the rule's params), on fewer images
        job = detection_job(cfg, "toy_high_frequency", cfg["seed"])
        job = replace(job, aware={**job.aware, "images": 50, "restarts": 1})
        inputs = {
            "data": str(results / f"data/{D}.h5"),
            "classifier": str(results / f"classifier/{D}/model.pt"),
        }
        for name, eps, key in job.attack_keys:
            for split in ("train", "test"):
                inputs[f"{key}__{split}"] = str(
                    smoke_run / path(ATTACK, run=D, attack=name, eps=eps, split=split)
                )
        out = {name: tmp_path / f"toy_{name}.csv" for name in ("evaluation", "aware")}
        table_keys = [
            attack_key(name, eps) for name, eps in decisions.detection_keys(cfg)
        ]  # the tables' row order
        run_detection_stage(
            job, inputs, out["evaluation"], out["aware"], tmp_path / "models", device="cpu", batch_size=200
        )
        mine = pd.read_csv(out["evaluation"])
        assert set(mine["method"]) == {"toy_high_frequency"} and mine["auroc"].between(0, 1).all()

        # the smoke run's detectors and the newcomer, through the tables the detection_tables rule writes
        methods = [m for m in DETECTORS if m != "toy_high_frequency"]
        evaluations = pd.concat(
            [pd.read_csv(results / f"detection/{D}/{m}/evaluation.csv") for m in methods] + [mine],
            ignore_index=True,
        )
        aware_rows = pd.concat(
            [pd.read_csv(results / f"detection/{D}/{m}/aware.csv") for m in decisions.aware_methods(cfg)[:-1]]
            + [pd.read_csv(out["aware"])],
            ignore_index=True,
        )
        tables = {
            f"{t}_{kind}": tmp_path / f"{t}.{kind}"
            for t in ("table4", "table5", "general", "defended")
            for kind in ("csv", "md")
        }
        write_detection_tables(evaluations, None, table_keys, None, tables, list(job.fprs), aware_rows)
        title = HighFrequency.title
        for table in ("table5", "defended"):  # (Table 4 and the generalisation matrix: the paper's detector)
            assert title in tables[f"{table}_md"].read_text(), table
        defended = pd.read_csv(tables["defended_csv"])
        assert defended.to_string().count(title) >= 1
    finally:
        unregister("toy_high_frequency")
    assert "toy_high_frequency" not in validate_config({})["detection"]["methods"]
