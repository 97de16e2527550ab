rule train_classifier:
    input:
        data="results/data/{dataset}.h5",
    output:
        model="results/classifier/{dataset}/model.pt",
        metrics="results/classifier/{dataset}/metrics.json",
        epochs="results/classifier/{dataset}/epochs.csv",
    log:
        "logs/classifier/{dataset}.log",
    benchmark:
        "results/benchmarks/train_classifier/{dataset}.tsv"
    params:
        classifier=canonical({k: v for k, v in config["classifier"].items() if k != "resources"}),
        seed=config["seed"],
        # per-epoch resumable state: a killed job continues from its last finished epoch
        state="results/classifier/{dataset}/train_state.pt",
    threads: config["classifier"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("classifier"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/train_classifier.py"
