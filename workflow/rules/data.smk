rule dataset:
    output:
        DATA,
    log:
        "logs/data/{run}.log",
    benchmark:
        "results/benchmarks/dataset/{run}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("dataset")
    resources:
        **resources_of("dataset"),
    params:
        dataset=dataset_settings(),
        seed=seed_of,
    script:
        "../scripts/make_dataset.py"
