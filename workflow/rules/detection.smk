rule detect:
    input:
        unpack(detection_inputs),
    output:
        evaluation=DETECTION_EVALUATION,
        aware=DETECTION_AWARE,
        models=directory(DETECTION_MODELS),
    log:
        "logs/detection/{run}/{method}.log",
    benchmark:
        "results/benchmarks/detect/{run}/{method}.tsv"
    wildcard_constraints:
        method="|".join(DETECTORS),
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("detection")
    resources:
        **resources_of("detection", gpu=True),
    params:
        # what the detector is, learns from and is evaluated on (plan.jobs.DetectionJob)
        job=detection_job_params,
    script:
        "../scripts/detect.py"


rule mmd_test:
    input:
        unpack(lambda w: detection_inputs(w, method="mmd")),
    output:
        MMD_POWER,
    log:
        "logs/detection/{run}/mmd.log",
    benchmark:
        "results/benchmarks/mmd_test/{run}/mmd.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("detection")
    resources:
        **resources_of("detection"),
    params:
        attack_keys=sorted(detection_keys()),
        # which batch size Table 5 shows, and whether the test runs at all, do not change its numbers
        settings=result_settings(
            "detection",
            leave_out=("detection.mmd.enabled", "detection.mmd.table_batch_size"),
        )["mmd"],
        seed=seed_of,
    script:
        "../scripts/mmd_test.py"


rule detection_tables:
    input:
        evaluations=[
            path(DETECTION_EVALUATION, method=m)
            for m in config["detection"]["methods"]
        ],
        aware=[path(DETECTION_AWARE, method=m) for m in decisions.aware_methods(config)],
        mmd=[MMD_POWER] if config["detection"]["mmd"]["enabled"] else [],
    output:
        table4_csv=report(
            path(TABLE, table="table4_detection.csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory="Table 4",
        ),
        table4_md=path(TABLE, table="table4_detection.md"),
        table5_csv=report(
            path(TABLE, table="table5_comparison.csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory="Table 5",
        ),
        table5_md=path(TABLE, table="table5_comparison.md"),
        general_csv=report(
            path(TABLE, table="detection_generalisation.csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory="Generalisation",
        ),
        general_md=path(TABLE, table="detection_generalisation.md"),
        defended_csv=report(
            path(TABLE, table="detection_defended.csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory="Defended accuracy",
        ),
        defended_md=path(TABLE, table="detection_defended.md"),
    log:
        "logs/tables/{run}/detection.log",
    benchmark:
        "results/benchmarks/detection_tables/{run}/detection.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        attack_keys=detection_keys(),  # in config order: the order of the tables' rows
        mmd_batch=config["detection"]["mmd"]["table_batch_size"],
        fprs=sorted(config["detection"]["fprs"]),
    script:
        "../scripts/detection_tables.py"
