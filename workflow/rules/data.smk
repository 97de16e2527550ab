rule dataset:
    output:
        DATA,
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset/{dataset}.tsv"
    params:
        dataset=dataset_settings(),
        seed=config["seed"],
    threads: threads_of("dataset")
    resources:
        **resources_of("dataset"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/make_dataset.py"
