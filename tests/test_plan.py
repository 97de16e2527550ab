"""The planning layer (`advdefense.plan`): names and decisions once, below the stages, without torch."""

import copy
import json
import subprocess
import sys

import pytest

from advdefense.config import load_yaml, validate_config
from advdefense.errors import ConfigError
from advdefense.plan import decisions
from advdefense.plan.detector_specs import BUILT_IN, DETECTORS, DetectorSpec
from advdefense.plan.names import ATTACK, SEED_TABLE, TABLE, attack_key, eps_tag, path, run_of, runs
from conftest import REPO

MODEL_LIBRARIES = ("torch", "torchvision", "torchattacks", "autoattack")

# the modules that name, check, estimate and report; none of them may load a model library
TORCH_FREE = (
    "advdefense.plan.names",
    "advdefense.plan.attack_specs",
    "advdefense.plan.detector_specs",
    "advdefense.plan.training_specs",
    "advdefense.plan.declarations",
    "advdefense.plan.decisions",
    "advdefense.plan.builder_spec",
    "advdefense.config",
    "advdefense.estimate",
    "advdefense.sources",
    "advdefense.attack_files",
    "advdefense.data",
    "advdefense.score_files",
    "advdefense.purified_files",
    "advdefense.tables",
    "advdefense.figures",
    "advdefense.seeds",
    "advdefense.robustbench_info",
    "advdefense.snakemake_job",
)


def _loaded_after(code: str) -> list[str]:
    """The model libraries in sys.modules after running `code` in a fresh interpreter."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps([m for m in {MODEL_LIBRARIES!r} if m in sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_planning_checking_and_reporting_modules_load_no_torch():
    """All of them in one interpreter: had one of them loaded torch, it would be in sys.modules."""
    assert _loaded_after("\n".join(f"import {module}" for module in TORCH_FREE)) == []


# the workflow scripts of jobs that read and write files but run no model (issue 42: the attack summary and the
# shard merge once loaded torch through `attacks.py`)
MODEL_FREE_SCRIPTS = (
    "attack_summary",
    "merge_attack_shards",
    "make_dataset",
    "corrupt",
    "table3",
    "detection_tables",
    "corruption_tables",
    "autoencoder_sweep",
    "classifier_table",
    "seed_table",
    "figure_examples",
    "figure_accuracy",
    "figure_auroc",
    "figure_detection",
    "figure_training",
    "reproduction",
    "robustbench_info",
)


def test_jobs_that_run_no_model_load_no_model_library():
    """Their scripts' imports (all of them in one interpreter, as the jobs run them) load no torch."""
    lines = []
    for name in MODEL_FREE_SCRIPTS:
        text = (REPO / "workflow/scripts" / f"{name}.py").read_text()
        lines += [
            line
            for line in text.splitlines()
            if line.startswith(("from ", "import ")) and "_checkout" not in line and "__future__" not in line
        ]
    assert any("attack_files import merge_attack_shards" in line for line in lines)  # what the probe runs
    assert _loaded_after("\n".join(lines)) == []


def test_the_probe_sees_torch_where_a_stage_loads_it():
    """The control: the same probe reports torch for a stage module (else the test above could not fail)."""
    assert "torch" in _loaded_after("import advdefense.attacks")


def test_config_checker_and_dag_build_load_no_torch(tmp_path):
    """`advdefense-check-config` on the paper's config, and Snakemake building the whole DAG of the smoke
    config (every rule file, input function and param), in one interpreter: no model library is loaded."""
    code = f"""
import sys
from advdefense.config import main
assert main([{str(REPO / "config/config.yaml")!r}]) == 0
sys.argv = ["dryrun_probe", {str(REPO / "Snakefile")!r}, {str(tmp_path)!r}, {str(REPO / "config/smoke.yaml")!r}]
import runpy
runpy.run_path({str(REPO / "tests/dryrun_probe.py")!r}, run_name="__main__")
"""
    assert _loaded_after(code) == []


def test_every_declared_detector_has_one_class_with_its_declaration():
    from advdefense.detectors import REGISTRY

    assert set(REGISTRY) == set(DETECTORS) >= BUILT_IN  # (and any plug-in file's)
    for name, cls in REGISTRY.items():
        spec = DETECTORS[name]
        assert cls.spec is spec
        assert (cls.title, cls.inputs, cls.needs, cls.supervised, cls.differentiable) == (
            spec.title,
            spec.inputs,
            spec.needs,
            spec.supervised,
            spec.differentiable,
        )


def test_a_detector_declared_by_its_class_joins_the_declarations_and_leaves_with_it():
    from advdefense.detectors import REGISTRY, Detector, register, unregister

    @register
    class Toy(Detector):
        name, title, inputs, needs = "toy_plan_test", "Toy", "latent", ("flow",)

    try:
        assert DETECTORS["toy_plan_test"] == DetectorSpec(
            "toy_plan_test", "Toy", inputs="latent", needs=("flow",)
        )
        assert DETECTORS["toy_plan_test"].on_flow_outputs and Toy.spec.models(attacked=True) == {
            "flow",
            "classifier",
        }
        with pytest.raises(ValueError, match="registered twice"):
            register(Toy)
    finally:
        unregister("toy_plan_test")
    assert "toy_plan_test" not in DETECTORS and "toy_plan_test" not in REGISTRY
    assert set(DETECTORS) >= BUILT_IN


def test_the_estimate_prices_a_detector_by_its_declaration_not_its_name():
    """A plug-in detector's declared fitting cost reaches the estimate (which names no detector); one that
    declares none costs its job and its scoring only."""
    from advdefense.detectors import Detector, register, unregister
    from advdefense.estimate import estimate_seconds
    from advdefense.plan.detector_specs import FitWork

    seen: list[FitWork] = []

    def hour_per_model(work: FitWork) -> float:
        seen.append(work)
        return 3600.0 * work.models

    @register
    class Costly(Detector):
        name, title, supervised = "toy_costly", "Costly", True
        fit_seconds = staticmethod(hour_per_model)

    @register
    class Free(Detector):
        name, title = "toy_free", "Free"

    try:
        base = _smoke(detection__methods=["latent_mlp"])
        keys = sum(len(base["attacks"][a]["epsilons"]) for a in decisions.detected_attacks(base))
        seconds = {
            m: estimate_seconds(_smoke(detection__methods=["latent_mlp", m]), cores=2)["detectors"]
            for m in ("toy_costly", "toy_free")
        }
        assert seen and seen[-1].models == keys + 1 and seen[-1].train_images > 0
        assert seconds["toy_costly"] - seconds["toy_free"] == pytest.approx(3600.0 * (keys + 1))
        assert Costly.fit_seconds(seen[-1]) == 3600.0 * (keys + 1)  # still a plain function on the class
    finally:
        unregister("toy_costly")
        unregister("toy_free")


def test_methods_null_means_every_registered_detector_plug_ins_included():
    """`detection.methods: null` (the default; the example configs list no names) resolves to every registered
    detector in declaration order, so a detector registered by a plug-in joins every run without a config edit;
    a listed subset stays as listed."""
    from advdefense.detectors import Detector, register, unregister

    cfg = load_yaml(REPO / "config/smoke.yaml")
    assert "methods" not in cfg["detection"]
    assert (
        validate_config(cfg)["detection"]["methods"]
        == list(DETECTORS)
        == [
            "latent_mlp",
            "pixel_cnn",
            "pca",
            "magnet",
            "magnet_jsd",
            "feature_squeezing",
            "mahalanobis",
            "lid",
            "bits_per_dim",
            "offgrid",
        ]
    )  # the built-ins, in declaration order

    @register
    class PlugIn(Detector):
        name, title = "toy_plug_in", "Plug-in"

    try:
        assert validate_config(cfg)["detection"]["methods"][-1] == "toy_plug_in"
        assert validate_config(_smoke(detection__methods=["latent_mlp", "pca"]))["detection"]["methods"] == [
            "latent_mlp",
            "pca",
        ]
    finally:
        unregister("toy_plug_in")


def test_a_declaration_refuses_an_unknown_input_kind_or_model():
    with pytest.raises(ValueError, match="inputs 'logits'"):
        DetectorSpec("x", "X", inputs="logits")
    with pytest.raises(ValueError, match="needs \\['gan'\\]"):
        DetectorSpec("x", "X", needs=("gan",))
    with pytest.raises(ValueError, match="classifier_copies 2 where needs is \\(\\)"):
        DetectorSpec("x", "X", classifier_copies=2)
    with pytest.raises(ValueError, match="classifier_copies 0"):
        DetectorSpec("x", "X", needs=("classifier",), classifier_copies=0)
    assert (
        DetectorSpec("x", "X", needs=("classifier",)).classifier_copies == 1
    )  # the default where it needs it
    assert DetectorSpec("x", "X").classifier_copies == 0


def test_the_estimate_prices_scoring_by_the_declared_classifier_copies():
    """What a detector's score costs through the classifier comes from its declaration (`classifier_copies`),
    not from a rule of the estimate: three copies cost three times one, in scoring and in the detector-aware
    attack's passes (where one that does not use the classifier still pays the one pass of the classifier it
    fools)."""
    from advdefense.detectors import Detector, register, unregister
    from advdefense.estimate import estimate_seconds

    scoring, attack = {}, {}
    for copies in (0, 1, 3):

        @register
        class Toy(Detector):
            name, title, classifier_copies = "toy_copies", "Copies", copies
            needs = ("classifier",) if copies else ()

        try:
            seconds = {}
            for targeted in ([], ["toy_copies"]):
                aware = {**_smoke()["detection"]["aware"], "methods": targeted}
                cfg = _smoke(detection__methods=["latent_mlp", "toy_copies"], detection__aware=aware)
                seconds[bool(targeted)] = estimate_seconds(cfg, cores=2)["detectors"]
            scoring[copies], attack[copies] = seconds[False], seconds[True] - seconds[False]
        finally:
            unregister("toy_copies")
    assert scoring[3] - scoring[0] == pytest.approx(3 * (scoring[1] - scoring[0])) and scoring[1] > scoring[0]
    assert (
        attack[3] == pytest.approx(3 * attack[1]) and attack[0] == pytest.approx(attack[1]) and attack[1] > 0
    )


def _smoke(**changes):
    cfg = load_yaml(REPO / "config/smoke.yaml")
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        cfg[section][leaf] = value
    return validate_config(cfg)


def test_decisions_of_the_smoke_config():
    cfg = _smoke()
    assert decisions.attacked_splits(cfg) == ["train", "test"]
    assert decisions.detects(cfg) and decisions.purifies(cfg)
    assert decisions.latent_clean_splits(cfg) == ["train", "test", "calibration"]
    assert decisions.trained_models(cfg) == ["classifier", "flow", "autoencoder"]
    # the detector-aware attack adds the classifier (and the flow, for a detector on latents) to a job's models
    assert decisions.detector_models(cfg, "latent_mlp") == {"flow", "classifier"}
    assert decisions.detector_models(cfg, "magnet") == {"autoencoder", "classifier"}
    assert decisions.detector_models(cfg, "offgrid") == set()  # not differentiable: never attacked
    assert decisions.detector_models(cfg, "mmd") == set()  # not a registered detector: no models
    assert "offgrid" not in decisions.aware_methods(cfg)


def test_decisions_follow_the_configuration():
    # without purification the autoencoder still trains where a detector needs it, and only then
    cfg = _smoke(purification__enabled=False)
    assert decisions.trains_autoencoder(cfg) and not decisions.purifies(cfg)
    cfg = _smoke(purification__enabled=False, detection__methods=["latent_mlp", "pca"])
    assert not decisions.trains_autoencoder(cfg) and "autoencoder" not in decisions.trained_models(cfg)
    # pixel detectors alone: no calibration latents
    cfg = _smoke(detection__enabled=False)
    assert decisions.latent_clean_splits(cfg) == ["train", "test"] and decisions.seed_tables(cfg) == [
        "summary",
        "table3_purification",
        "corruption_classifier",  # the smoke config's corruptions (no detector: no false-alarm table)
        "corruption_purifiers",
    ]


def test_names_are_defined_once_and_round_trip():
    assert eps_tag(0.02) == "0.02" and eps_tag(8 / 255) == "0.03137255" and eps_tag(1e-10) == "0.0000000001"
    file = path(ATTACK, run="cifar10-seed1", attack="pgd", eps=8 / 255, split="test")
    assert file == "results/attacks/cifar10-seed1/pgd/eps0.03137255/test.h5"
    assert run_of(file) == "cifar10-seed1" and run_of(path(TABLE, run="x", table="t.md")) == "x"
    assert path(SEED_TABLE, table="t.csv") == "results/seeds/{name}/tables/t.csv"  # the rest stay wildcards
    assert runs({"dataset": {"name": "c"}, "seed": 3, "seeds": None}) == {"c": 3}
    assert runs({"dataset": {"name": "c"}, "seed": 3, "seeds": [0, 2]}) == {"c-seed0": 0, "c-seed2": 2}
    two = {
        "dataset": {"name": "c"},
        "seed": 3,
        "seeds": [0],
        "classifier": {"training": ["standard", "trades"]},
    }
    assert runs(two) == {"c-standard-seed0": 0, "c-trades-seed0": 0}


def test_the_trained_flag_has_one_strict_reader():
    """Table 4/5 and the AUROC figure read a detector's `trained` cell through one function: the word 'False'
    after a CSV round trip is False (Python's bool('False') would be True), and anything else is refused."""
    import pandas as pd

    from advdefense.errors import PipelineFileError
    from advdefense.tables import _trained, trained_flag

    assert (
        _trained(pd.Series({"trained": "False"})) is False and _trained(pd.Series({"trained": True})) is True
    )
    with pytest.raises(PipelineFileError, match="x.csv: column 'trained' holds 'yes'"):
        trained_flag("yes", "x.csv")


def test_light_jobs_resources_set_the_light_jobs_and_only_them(tmp_path):
    """`light_jobs.resources` (once `tables.resources`, a name that hid shard merging and the figures) gives
    its threads to every job that only reads, merges and writes files, and to no stage job."""
    import yaml

    cfg = load_yaml(REPO / "config/smoke.yaml")
    cfg["attack_defaults"]["shards"] = 2
    cfg["light_jobs"] = {"resources": {"threads": 3}}
    configfile = tmp_path / "light.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/dryrun_probe.py"), str(REPO / "Snakefile")]
        + [str(tmp_path), str(configfile)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = json.loads(proc.stdout.strip().splitlines()[-1])[str(configfile)]
    assert isinstance(jobs, list), jobs
    threads: dict[str, list[int]] = {}
    for rule, job_threads in jobs:
        threads.setdefault(rule, []).append(job_threads)
    light = {rule for rule, per_job in threads.items() if set(per_job) == {3}}
    assert light == {rule for rule in threads if rule in LIGHT_RULES}
    assert {"merge_attack_shards", "attack_summary", "table3", "detection_tables", "figure_training"} <= light
    assert all(3 not in per_job for rule, per_job in threads.items() if rule not in light)


# the rules whose resources come from `light_jobs` (workflow/rules/*.smk)
LIGHT_RULES = {
    "robustbench_info",
    "merge_attack_shards",
    "attack_summary",
    "table3",
    "detection_tables",
    "corruption_tables",
    "figure_examples",
    "figure_accuracy_eps",
    "figure_auroc_eps",
    "figure_detection",
    "figure_training",
    "seed_table",
    "seed_figure_accuracy",
    "seed_figure_auroc",
    "reproduction_page",
}


def test_an_attack_job_record_is_what_the_rule_gives_its_script():
    """Issue 42: the attack rule's params are the job record (`plan.jobs.attack_job`), plain JSON (Snakemake compares
    params by their text), and the script rebuilds the same record from them, a shard job with its shard."""
    from advdefense.plan.jobs import AttackJob, attack_job
    from advdefense.plan.seeds import keyed_seed

    cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
    job = attack_job(cfg, "pgd", 0.03, "test", 7)
    assert job.spec == decisions.attack_settings(cfg["attacks"]["pgd"]) and "epsilons" not in job.spec
    assert (job.images, job.batch_size, job.seed) == (
        cfg["attack_defaults"]["images"]["test"],
        cfg["attack_defaults"]["batch_size"],
        7,
    )
    params = job.params()
    assert json.loads(json.dumps(params, sort_keys=True)) == params and list(params) == sorted(params)
    assert AttackJob.from_params(params) == job
    shard = AttackJob.from_params(params, shard=(1, 3))
    assert shard.shard == (1, 3) and shard.job_seed == job.job_seed  # a shard draws the job's batches
    first, end = shard.shard_bounds(10 * job.batch_size)
    assert first == 3 * job.batch_size and end == 6 * job.batch_size  # 10 batches in 3 shards: 3, 3, 4
    assert job.job_seed == keyed_seed(7, "pgd/0.03/test") != attack_job(cfg, "pgd", 0.03, "test", 8).job_seed
    assert len({job.batch_seed(k * job.batch_size) for k in range(10)}) == 10


def test_a_detection_job_record_is_what_the_rule_gives_its_script():
    """Issue 42: the detect rule's params are the job record (`plan.jobs.detection_job`): sorted attack keys (the
    YAML's order changes nothing a detector learns), the aware attack's settings only for a detector it attacks;
    the script rebuilds the same record."""
    from advdefense.plan.jobs import AWARE_OFF, DetectionJob, detection_job

    cfg = validate_config(load_yaml(REPO / "config/smoke.yaml"))
    job = detection_job(cfg, "latent_mlp", 3)
    expected = sorted((n, float(e), attack_key(n, e)) for n, e in decisions.detection_keys(cfg))
    assert list(job.attack_keys) == expected and job.keys == [k for *_, k in expected]
    assert job.settings == cfg["detection"]["latent_mlp"] and job.seed == 3
    assert list(job.fprs) == sorted(cfg["detection"]["fprs"])
    assert job.epsilons == sorted({float(e) for _, e, _ in expected})
    assert job.runs_aware and job.aware["methods"] == ["latent_mlp"]
    run = job.aware_run()  # what the detector-aware attack is given
    assert run.fpr == float(cfg["detection"]["aware"]["fpr"]) and list(run.epsilons) == job.aware_epsilons
    assert run.seed == 3 and run.settings is job.aware
    with pytest.raises(ConfigError, match=r"detection.aware.fpr: 0.2 is not one of detection.fprs"):
        DetectionJob.from_params(job.params(), aware={**job.aware, "fpr": 0.2}).aware_run()
    not_attacked = detection_job(cfg, "offgrid", 3)  # not differentiable: the aware attack does not target it
    assert not not_attacked.runs_aware and not_attacked.aware == AWARE_OFF
    params = job.params()
    assert json.loads(json.dumps(params, sort_keys=True)) == params
    assert DetectionJob.from_params(params) == job
    # the same attacks listed in another order: the same record
    reordered = copy.deepcopy(cfg)
    reordered["attacks"] = dict(reversed(list(cfg["attacks"].items())))
    reordered["detection"]["attacks"] = list(reversed(cfg["detection"]["attacks"] or list(cfg["attacks"])))
    assert detection_job(reordered, "latent_mlp", 3) == job
    # the aware attack at one epsilon of several
    one = DetectionJob.from_params(params, aware={**job.aware, "epsilons": [job.epsilons[-1]]})
    assert one.aware_epsilons == [job.epsilons[-1]]
