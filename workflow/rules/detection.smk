rule detect:
    input:
        unpack(detection_inputs),
    output:
        evaluation="results/detection/{dataset}/{method}/evaluation.csv",
        models=directory("results/detection/{dataset}/{method}/models"),
    log:
        "logs/detection/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/detect/{dataset}/{method}.tsv"
    params:
        attack_keys=detection_keys(),
        settings=lambda w: canonical(config["detection"].get(w.method, {})),
        seed=config["seed"],
    wildcard_constraints:
        method="latent_mlp|pixel_cnn|pca|magnet",
    threads: config["detection"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("detection"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/detect.py"


rule mmd_test:
    input:
        unpack(lambda w: detection_inputs(w, method="mmd")),
    output:
        "results/detection/{dataset}/mmd/power.csv",
    log:
        "logs/detection/{dataset}/mmd.log",
    benchmark:
        "results/benchmarks/mmd_test/{dataset}/mmd.tsv"
    params:
        attack_keys=detection_keys(),
        settings=canonical(config["detection"]["mmd"]),
        seed=config["seed"],
    threads: config["detection"]["resources"]["threads"]
    resources:
        runtime=config["detection"]["resources"]["runtime"],
        mem_mb=config["detection"]["resources"]["mem_mb"],
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/mmd_test.py"


rule detection_tables:
    input:
        evaluations=expand(
            "results/detection/{{dataset}}/{method}/evaluation.csv", method=config["detection"]["methods"]
        ),
        mmd=(
            ["results/detection/{dataset}/mmd/power.csv"]
            if config["detection"]["mmd"]["enabled"]
            else []
        ),
    output:
        table4_csv=report("results/tables/{dataset}/table4_detection.csv", caption="../report/table.rst", category="Tables", subcategory="Table 4"),
        table4_md="results/tables/{dataset}/table4_detection.md",
        table5_csv=report("results/tables/{dataset}/table5_comparison.csv", caption="../report/table.rst", category="Tables", subcategory="Table 5"),
        table5_md="results/tables/{dataset}/table5_comparison.md",
        general_csv=report("results/tables/{dataset}/detection_generalisation.csv", caption="../report/table.rst", category="Tables", subcategory="Generalisation"),
        general_md="results/tables/{dataset}/detection_generalisation.md",
    log:
        "logs/tables/{dataset}/detection.log",
    benchmark:
        "results/benchmarks/detection_tables/{dataset}/detection.tsv"
    params:
        attack_keys=detection_keys(),
        mmd_batch=config["detection"]["mmd"]["table_batch_size"],
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/detection_tables.py"
