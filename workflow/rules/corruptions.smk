rule corrupt:
    input:
        data=DATA,
    output:
        CORRUPTED,
    log:
        "logs/corrupted/{run}/{corruption}.log",
    benchmark:
        "results/benchmarks/corrupt/{run}/{corruption}.tsv"
    wildcard_constraints:
        corruption="|".join(decisions.corruptions(config)) or r"(?!x)x",
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("corruptions")
    resources:
        **resources_of("corruptions"),
    params:
        severities=decisions.corruption_severities(config),
        images=config["attack_defaults"]["images"]["test"],  # the test images the attacks use
        corrupted=config["corruptions"]["images"],  # how many of them (null: all)
        seed=seed_of,
    script:
        "../scripts/corrupt.py"


rule corruption_accuracy:
    input:
        unpack(corruption_accuracy_inputs),
    output:
        path(TABLE, table=CORRUPTION_ACCURACY),
    log:
        "logs/corrupted/{run}/accuracy.log",
    benchmark:
        "results/benchmarks/corruption_accuracy/{run}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("corruptions")
    resources:
        **resources_of("corruptions", gpu=True),
    params:
        purifiers=lambda w: {
            name: canonical(purifier_settings_of(config, name))
            for name in decisions.purifiers(config)
        },
    script:
        "../scripts/corruption_accuracy.py"


rule corruption_tables:
    input:
        unpack(corruption_table_inputs),
    output:
        **{k: path(TABLE, table=v) for k, v in CORRUPTION_TABLES.items()},
    log:
        "logs/tables/{run}/corruptions.log",
    benchmark:
        "results/benchmarks/corruption_tables/{run}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        corruptions=decisions.corruptions(config),
        severities=decisions.corruption_severities(config),
    script:
        "../scripts/corruption_tables.py"
