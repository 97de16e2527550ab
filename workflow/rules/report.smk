rule figure_examples:
    input:
        data=DATA,
        attacks=lambda w: list(figure1_attack_files(w.run).values()),
    output:
        report(
            path(FIGURE, figure="figure1_examples.png"),
            caption="../report/figure1.rst",
            category="Figures",
        ),
    log:
        "logs/figures/{run}/figure1.log",
    benchmark:
        "results/benchmarks/figure_examples/{run}/figure1.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        attack_names=lambda w: list(figure1_attack_files(w.run)),  # each file's attack (its row label), in order
    script:
        "../scripts/figure_examples.py"


rule figure_accuracy_eps:
    input:
        summaries=ATTACK_SUMMARY,
        purified=lambda w: purified_test_files(w.run),
        adaptive=lambda w: adaptive_test_files(w.run),
    output:
        png=report(
            path(FIGURE, figure="accuracy_vs_epsilon.png"),
            caption="../report/accuracy_eps.rst",
            category="Figures",
        ),
        csv=path(FIGURE, figure="accuracy_vs_epsilon.csv"),
    log:
        "logs/figures/{run}/accuracy_vs_epsilon.log",
    benchmark:
        "results/benchmarks/figure_accuracy_eps/{run}/accuracy_vs_epsilon.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/figure_accuracy.py"


rule figure_auroc_eps:
    input:
        evaluations=lambda w: [
            path(DETECTION_EVALUATION, run=w.run, method=m)
            for m in config["detection"]["methods"]
        ],
    output:
        png=report(
            path(FIGURE, figure="auroc_vs_epsilon.png"),
            caption="../report/auroc_eps.rst",
            category="Figures",
        ),
        csv=path(FIGURE, figure="auroc_vs_epsilon.csv"),
    log:
        "logs/figures/{run}/auroc_vs_epsilon.log",
    benchmark:
        "results/benchmarks/figure_auroc_eps/{run}/auroc_vs_epsilon.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/figure_auroc.py"


rule figure_detection:
    input:
        models=path(DETECTION_MODELS, method=PAPER_DETECTOR),
    output:
        roc=report(
            path(FIGURE, figure="roc_latent_detector.png"),
            caption="../report/roc.rst",
            category="Figures",
        ),
        histograms=report(
            path(FIGURE, figure="scores_latent_detector.png"),
            caption="../report/histograms.rst",
            category="Figures",
        ),
    log:
        "logs/figures/{run}/detection.log",
    benchmark:
        "results/benchmarks/figure_detection/{run}/detection.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/figure_detection.py"


rule figure_training:
    input:
        unpack(training_logs),
    output:
        report(
            path(FIGURE, figure="training_curves.png"),
            caption="../report/training.rst",
            category="Figures",
        ),
    log:
        "logs/figures/{run}/training.log",
    benchmark:
        "results/benchmarks/figure_training/{run}/training.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    script:
        "../scripts/figure_training.py"


rule reproduction_page:
    input:
        unpack(reproduction_inputs),
    output:
        csv=REPRODUCTION_TABLE,
        md=report(
            REPRODUCTION_PAGE,
            caption="../report/table.rst",
            category="Reproduction",
        ),
    log:
        "logs/reproduction/{name}.log",
    benchmark:
        "results/benchmarks/reproduction_page/{name}.tsv"
    conda:
        "../../envs/report.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        epsilon=decisions.reproduction_epsilon(config),
        data=decisions.data_label(config),
        title=lambda w: f"Does the paper hold up? Run {w.name}",
    script:
        "../scripts/reproduction.py"
