# `seeds`: every group's tables and figures gathered over the seeds (mean and sd); only with a list of seeds.
# A list `classifier.training`: each table of the groups (one per method) side by side.


rule seed_table:
    input:
        seed_table_inputs,
    output:
        csv=report(
            path(SEED_TABLE, table="{table}.csv"),
            caption="../report/seed_table.rst",
            category="Over seeds",
        ),
        md=path(SEED_TABLE, table="{table}.md"),
    log:
        "logs/seeds/{name}/{table}.log",
    benchmark:
        "results/benchmarks/seed_table/{name}/{table}.tsv"
    wildcard_constraints:
        table=r"[a-z0-9_]+",
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        seeds=seeds_of_group,
    script:
        "../scripts/seed_table.py"


rule seed_figure_accuracy:
    input:
        summaries=lambda w: [
            path(ATTACK_SUMMARY, run=run) for run in group_runs(w.name)
        ],
        purified=lambda w: [
            f for run in group_runs(w.name) for f in purified_test_files(run)
        ],
        adaptive=lambda w: [
            f for run in group_runs(w.name) for f in adaptive_test_files(run)
        ],
    output:
        png=report(
            path(SEED_FIGURE, figure="accuracy_vs_epsilon.png"),
            caption="../report/accuracy_eps.rst",
            category="Over seeds",
        ),
        csv=path(SEED_FIGURE, figure="accuracy_vs_epsilon.csv"),
    log:
        "logs/seeds/{name}/accuracy_vs_epsilon.log",
    benchmark:
        "results/benchmarks/seed_figure_accuracy/{name}/accuracy_vs_epsilon.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/figure_accuracy.py"


rule seed_figure_auroc:
    input:
        evaluations=lambda w: [
            path(DETECTION_EVALUATION, run=run, method=m)
            for run in group_runs(w.name)
            for m in config["detection"]["methods"]
        ],
    output:
        png=report(
            path(SEED_FIGURE, figure="auroc_vs_epsilon.png"),
            caption="../report/auroc_eps.rst",
            category="Over seeds",
        ),
        csv=path(SEED_FIGURE, figure="auroc_vs_epsilon.csv"),
    log:
        "logs/seeds/{name}/auroc_vs_epsilon.log",
    benchmark:
        "results/benchmarks/seed_figure_auroc/{name}/auroc_vs_epsilon.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/figure_auroc.py"


rule classifier_table:
    input:
        unpack(classifier_table_inputs),
    output:
        csv=report(
            path(CLASSIFIERS_TABLE, table="{table}.csv"),
            caption="../report/classifier_table.rst",
            category="Classifiers side by side",
        ),
        md=path(CLASSIFIERS_TABLE, table="{table}.md"),
    log:
        "logs/classifiers/{name}/{table}.log",
    benchmark:
        "results/benchmarks/classifier_table/{name}/{table}.tsv"
    wildcard_constraints:
        table=r"[a-z0-9_]+",
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        methods=GROUPS,
        seeds=config["seeds"],
    script:
        "../scripts/classifier_table.py"
