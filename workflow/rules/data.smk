rule dataset:
    output:
        "results/data/{dataset}.h5",
    log:
        "logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/dataset/{dataset}.tsv"
    params:
        dataset=canonical(config["dataset"]),
        seed=config["seed"],
    resources:
        runtime=30,
        mem_mb=4000,
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/make_dataset.py"
