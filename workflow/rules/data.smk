rule dataset:
    output:
        DATA,
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset/{dataset}.tsv"
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
