if config["classifier"]["source"] == "train":

    rule train_classifier:
        input:
            data=DATA,
        output:
            model=CLASSIFIER,
            metrics=CLASSIFIER_METRICS,
            epochs=CLASSIFIER_EPOCHS,
        log:
            "logs/classifier/{run}.log",
        benchmark:
            "results/benchmarks/train_classifier/{run}.tsv"
        conda:
            "../../envs/pipeline.yaml"
        threads: threads_of("classifier")
        resources:
            **resources_of("classifier", gpu=True),
        params:
            # the run's training method with its settings block only (others' changes re-run nothing here)
            classifier=run_classifier_settings,
            seed=seed_of,
            # per-epoch resumable state: a killed job continues from its last finished epoch
            state=CLASSIFIER_STATE,
        script:
            "../scripts/train_classifier.py"

elif config["classifier"]["source"] == "robustbench":

    rule import_robustbench:
        input:
            data=DATA,
            # the zoo's checkpoint where it is already in place (else the job has the package download it)
            checkpoint=robustbench_checkpoint_if_present(),
        output:
            model=CLASSIFIER,
            metrics=CLASSIFIER_METRICS,
        log:
            "logs/classifier/{run}.log",
        benchmark:
            "results/benchmarks/import_robustbench/{run}.tsv"
        conda:
            "../../envs/pipeline.yaml"
        threads: threads_of("classifier")
        resources:
            **resources_of("classifier", gpu=True),
        params:
            robustbench=result_settings("classifier")["robustbench"],
            dataset=decisions.robustbench_dataset(config),
        script:
            "../scripts/import_robustbench.py"

else:

    rule import_classifier:
        input:
            checkpoint=config["classifier"]["checkpoint"]["path"],
            data=DATA,
            # the file that defines the builder: editing it imports the model again
            builder=builder_files(),
        output:
            model=CLASSIFIER,
            metrics=CLASSIFIER_METRICS,
        log:
            "logs/classifier/{run}.log",
        benchmark:
            "results/benchmarks/import_classifier/{run}.tsv"
        conda:
            "../../envs/pipeline.yaml"
        threads: threads_of("classifier")
        resources:
            **resources_of("classifier", gpu=True),
        params:
            checkpoint=result_settings("classifier")["checkpoint"],
            builder_sha256=[file_sha256(f) for f in builder_files()],
        script:
            "../scripts/import_classifier.py"
