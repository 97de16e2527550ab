rule attack:
    input:
        data=DATA,
        model=CLASSIFIER,
    output:
        ATTACK,
    log:
        "logs/attacks/{run}/{attack}/eps{eps}/{split}.log",
    benchmark:
        "results/benchmarks/attack/{run}/{attack}/eps{eps}/{split}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("attack_defaults")
    resources:
        **resources_of("attack_defaults", gpu=True),
    params:
        # the job's record (advdefense.plan.jobs.AttackJob): attack settings, only this file's epsilon (adding an
        # epsilon to the list does not re-run the existing ones), images, seed and batch size
        job=attack_job_params,
    script:
        "../scripts/attack.py"


if SHARDS > 1:

    # attack_defaults.shards: N jobs per (attack, epsilon, split), each a GPU job taking whole batches, merged
    ruleorder: merge_attack_shards > attack

    use rule attack as attack_shard with:
        output:
            ATTACK_SHARD,
        log:
            "logs/attacks/{run}/{attack}/eps{eps}/{split}.shard{shard}-of-{shards}.log",
        benchmark:
            "results/benchmarks/attack/{run}/{attack}/eps{eps}/{split}.shard{shard}-of-{shards}.tsv"

    rule merge_attack_shards:
        input:
            shards=attack_shards,
            data=DATA,  # shards come from other machines: each is checked against it (positions, labels, norms)
        output:
            ATTACK,
        log:
            "logs/attacks/{run}/{attack}/eps{eps}/{split}.merge.log",
        benchmark:
            "results/benchmarks/merge_attack_shards/{run}/{attack}/eps{eps}/{split}.tsv"
        conda:
            "../../envs/pipeline.yaml"
        threads: threads_of("light_jobs")
        resources:
            **resources_of("light_jobs"),
        script:
            "../scripts/merge_attack_shards.py"


rule attack_summary:
    input:
        files=lambda w: attack_files(w.run),
        data=DATA,  # every file is checked against it (positions, labels, norms)
    output:
        report(
            ATTACK_SUMMARY,
            caption="../report/table.rst",
            category="Tables",
            subcategory="Attacks",
        ),
    log:
        "logs/attacks/{run}/summary.log",
    benchmark:
        "results/benchmarks/attack_summary/{run}/summary.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/attack_summary.py"


rule robustbench_info:
    input:
        unpack(robustbench_corruption_input),
        attack=path(ATTACK, split="test"),
        classifier=CLASSIFIER_METRICS,
    output:
        ROBUSTBENCH_INFO,
    log:
        "logs/attacks/{run}/{attack}/eps{eps}/robustbench_info.log",
    benchmark:
        "results/benchmarks/robustbench_info/{run}/{attack}/eps{eps}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        dataset=decisions.robustbench_dataset(config),
        architecture=decisions.classifier_architecture(config),
    script:
        "../scripts/robustbench_info.py"
