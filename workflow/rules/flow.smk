if config["flow"]["source"] == "train":

    rule train_flow:
        input:
            data=DATA,
        output:
            model=FLOW,
            metrics=FLOW_METRICS,
            epochs=FLOW_EPOCHS,
        log:
            "logs/flow/{run}.log",
        benchmark:
            "results/benchmarks/train_flow/{run}.tsv"
        conda:
            "../../envs/pipeline.yaml"
        threads: threads_of("flow")
        resources:
            **resources_of("flow", gpu=True),
        params:
            flow=result_settings("flow", leave_out=("flow.source", "flow.pretrained")),
            seed=seed_of,
            state=FLOW_STATE,
        script:
            "../scripts/train_flow.py"

else:

    rule import_flow:
        input:
            checkpoint=config["flow"]["pretrained"]["checkpoint"],
            hparams=config["flow"]["pretrained"]["hparams"],
            data=DATA,
        output:
            model=FLOW,
            metrics=FLOW_METRICS,
        log:
            "logs/flow/{run}.log",
        benchmark:
            "results/benchmarks/import_flow/{run}.tsv"
        conda:
            "../../envs/pipeline.yaml"
        threads: threads_of("flow")
        resources:
            **resources_of("flow", gpu=True),
        script:
            "../scripts/import_flow.py"


rule latents_clean:
    input:
        data=DATA,
        flow=FLOW,
    output:
        LATENTS_CLEAN,
    log:
        "logs/latents/{run}/clean/{split}.log",
    benchmark:
        "results/benchmarks/latents_clean/{run}/clean/{split}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("latents")
    resources:
        **resources_of("latents", gpu=True),
    params:
        images=attacked_count,
        seed=seed_of,
    script:
        "../scripts/latents.py"


rule latents_attack:
    input:
        attack=ATTACK,
        flow=FLOW,
        data=DATA,  # the attack file is checked against it (positions, labels, norms)
    output:
        LATENTS_ATTACK,
    log:
        "logs/latents/{run}/{attack}/eps{eps}/{split}.log",
    benchmark:
        "results/benchmarks/latents_attack/{run}/{attack}/eps{eps}/{split}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("latents")
    resources:
        **resources_of("latents", gpu=True),
    script:
        "../scripts/latents.py"
