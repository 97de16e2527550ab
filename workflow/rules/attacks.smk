rule attack:
    input:
        data="results/data/{dataset}.h5",
        model="results/classifier/{dataset}/model.pt",
    output:
        "results/attacks/{dataset}/{attack}/eps{eps}/{split}.h5",
    log:
        "logs/attacks/{dataset}/{attack}/eps{eps}/{split}.log",
    benchmark:
        "results/benchmarks/attack/{dataset}/{attack}/eps{eps}/{split}.tsv"
    params:
        job=attack_job_params,
        epsilon=attack_epsilon,
    threads: config["attack_defaults"]["resources"]["threads"]
    resources:
        gpu=1,
        **resources_of("attack_defaults"),
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/attack.py"


rule attack_summary:
    input:
        attack_files(),
    output:
        report("results/attacks/{dataset}/summary.csv", caption="../report/table.rst", category="Tables", subcategory="Attacks"),
    log:
        "logs/attacks/{dataset}/summary.log",
    benchmark:
        "results/benchmarks/attack_summary/{dataset}/summary.tsv"
    conda:
        "../../envs/pipeline.yaml"
    script:
        "../scripts/attack_summary.py"
