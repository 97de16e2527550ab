if config["flow"]["source"] == "train":

    rule train_flow:
        input:
            data="results/data/{dataset}.h5",
        output:
            model="results/flow/{dataset}/model.pt",
            metrics="results/flow/{dataset}/metrics.json",
            epochs="results/flow/{dataset}/epochs.csv",
        log:
            "logs/flow/{dataset}.log",
        benchmark:
            "results/benchmarks/train_flow/{dataset}.tsv"
        params:
            flow=canonical({k: v for k, v in config["flow"].items() if k not in ("resources", "eval_batch_size")}),
            seed=config["seed"],
            state="results/flow/{dataset}/train_state.pt",
        threads: config["flow"]["resources"]["threads"]
        resources:
            gpu=1,
            **resources_of("flow"),
        conda:
            "../../envs/pipeline.yaml"
        script:
            "../scripts/train_flow.py"

else:

    rule import_flow:
        input:
            checkpoint=config["flow"]["pretrained"]["checkpoint"],
            hparams=config["flow"]["pretrained"]["hparams"],
            data="results/data/{dataset}.h5",
        output:
            model="results/flow/{dataset}/model.pt",
            metrics="results/flow/{dataset}/metrics.json",
        log:
            "logs/flow/{dataset}.log",
        benchmark:
            "results/benchmarks/import_flow/{dataset}.tsv"
        threads: config["flow"]["resources"]["threads"]
        resources:
            gpu=1,
            runtime=60,
            mem_mb=8000,
        conda:
            "../../envs/pipeline.yaml"
        script:
            "../scripts/import_flow.py"


rule latents_clean:
    input:
        data="results/data/{dataset}.h5",
        flow="results/flow/{dataset}/model.pt",
    output:
        "results/latents/{dataset}/clean/{split}.h5",
    log:
        "logs/latents/{dataset}/clean/{split}.log",
    benchmark:
        "results/benchmarks/latents_clean/{dataset}/clean/{split}.tsv"
    params:
        images=lambda w: config["attack_defaults"]["images"][w.split],
        seed=config["seed"],
    threads: config["latents"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("latents"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/latents.py"


rule latents_attack:
    input:
        attack="results/attacks/{dataset}/{attack}/eps{eps}/{split}.h5",
        flow="results/flow/{dataset}/model.pt",
    output:
        "results/latents/{dataset}/{attack}/eps{eps}/{split}.h5",
    log:
        "logs/latents/{dataset}/{attack}/eps{eps}/{split}.log",
    benchmark:
        "results/benchmarks/latents_attack/{dataset}/{attack}/eps{eps}/{split}.tsv"
    threads: config["latents"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("latents"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/latents.py"
