rule train_classifier:
    input:
        data=DATA,
    output:
        model=CLASSIFIER,
        metrics=CLASSIFIER_METRICS,
        epochs=CLASSIFIER_EPOCHS,
    log:
        "logs/classifier/{dataset}.log",
    benchmark:
        "results/benchmarks/train_classifier/{dataset}.tsv"
    params:
        classifier=result_settings("classifier"),
        seed=config["seed"],
        # per-epoch resumable state: a killed job continues from its last finished epoch
        state=CLASSIFIER_STATE,
    threads: threads_of("classifier")
    resources:
        **resources_of("classifier", gpu=True),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/train_classifier.py"
