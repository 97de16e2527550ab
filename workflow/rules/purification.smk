rule train_autoencoder:
    input:
        data="results/data/{dataset}.h5",
    output:
        model="results/autoencoder/{dataset}/model.pt",
        metrics="results/autoencoder/{dataset}/metrics.json",
        epochs="results/autoencoder/{dataset}/epochs.csv",
    log:
        "logs/autoencoder/{dataset}.log",
    benchmark:
        "results/benchmarks/train_autoencoder/{dataset}.tsv"
    params:
        autoencoder=canonical({k: v for k, v in config["autoencoder"].items() if k != "resources"}),
        seed=config["seed"],
        state="results/autoencoder/{dataset}/train_state.pt",
    threads: config["autoencoder"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("autoencoder"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/train_autoencoder.py"


rule purify_attack:
    input:
        attack="results/attacks/{dataset}/{attack}/eps{eps}/{split}.h5",
        autoencoder="results/autoencoder/{dataset}/model.pt",
        model="results/classifier/{dataset}/model.pt",
    output:
        "results/purified/{dataset}/{attack}/eps{eps}/{split}.h5",
    log:
        "logs/purified/{dataset}/{attack}/eps{eps}/{split}.log",
    benchmark:
        "results/benchmarks/purify_attack/{dataset}/{attack}/eps{eps}/{split}.tsv"
    threads: config["attack_defaults"]["resources"]["threads"]
    resources:
        gpu=1,
        runtime=30,
        mem_mb=4000,
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/purify.py"


rule purify_clean:
    input:
        data="results/data/{dataset}.h5",
        autoencoder="results/autoencoder/{dataset}/model.pt",
        model="results/classifier/{dataset}/model.pt",
    output:
        "results/purified/{dataset}/clean/{split}.h5",
    log:
        "logs/purified/{dataset}/clean/{split}.log",
    benchmark:
        "results/benchmarks/purify_clean/{dataset}/clean/{split}.tsv"
    params:
        images=lambda w: config["attack_defaults"]["images"][w.split],
        seed=config["seed"],
    threads: config["attack_defaults"]["resources"]["threads"]
    resources:
        gpu=1,
        runtime=30,
        mem_mb=4000,
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/purify.py"


rule adaptive_attack:
    input:
        data="results/data/{dataset}.h5",
        autoencoder="results/autoencoder/{dataset}/model.pt",
        model="results/classifier/{dataset}/model.pt",
    output:
        "results/adaptive/{dataset}/{attack}/eps{eps}/test.h5",
    log:
        "logs/adaptive/{dataset}/{attack}/eps{eps}.log",
    benchmark:
        "results/benchmarks/adaptive_attack/{dataset}/{attack}/eps{eps}.tsv"
    params:
        job=lambda w: attack_job_params(w, "test"),
        images=config["purification"]["adaptive"]["images"],
        epsilon=attack_epsilon,
    threads: config["attack_defaults"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("attack_defaults"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/adaptive_attack.py"


rule table3:
    input:
        purified=lambda w: list(table3_inputs(w.dataset)["purified"].values()),
        adaptive=lambda w: list(table3_inputs(w.dataset)["adaptive"].values()),
        clean="results/purified/{dataset}/clean/test.h5",
    output:
        csv=report("results/tables/{dataset}/table3_purification.csv", caption="../report/table.rst", category="Tables", subcategory="Table 3"),
        md="results/tables/{dataset}/table3_purification.md",
    log:
        "logs/tables/{dataset}/table3.log",
    benchmark:
        "results/benchmarks/table3/{dataset}/table3.tsv"
    params:
        columns=table3_columns(),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/table3.py"
