rule train_autoencoder:
    input:
        data=DATA,
    output:
        model=AUTOENCODER,
        metrics=AUTOENCODER_METRICS,
        epochs=AUTOENCODER_EPOCHS,
    log:
        "logs/autoencoder/{run}.log",
    benchmark:
        "results/benchmarks/train_autoencoder/{run}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("autoencoder")
    resources:
        **resources_of("autoencoder", gpu=True),
    params:
        autoencoder=result_settings("autoencoder"),
        seed=seed_of,
        state=AUTOENCODER_STATE,
    script:
        "../scripts/train_autoencoder.py"


rule train_autoencoder_point:
    input:
        data=DATA,
    output:
        model=AUTOENCODER_POINT,
        metrics=AUTOENCODER_POINT_METRICS,
        epochs=AUTOENCODER_POINT_EPOCHS,
    log:
        "logs/autoencoder/{run}/sweep/{point}.log",
    benchmark:
        "results/benchmarks/train_autoencoder_point/{run}/{point}.tsv"
    wildcard_constraints:
        point=points_pattern(decisions.trained_points(config)),
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("autoencoder")
    resources:
        **resources_of("autoencoder", gpu=True),
    params:
        autoencoder=autoencoder_point_settings,
        seed=seed_of,
        state=AUTOENCODER_POINT_STATE,
    script:
        "../scripts/train_autoencoder.py"


rule import_autoencoder_point:
    input:
        data=DATA,
        checkpoint=lambda w: decisions.autoencoder_sweep(config)[w.point]["checkpoint"],
    output:
        model=AUTOENCODER_POINT,
        metrics=AUTOENCODER_POINT_METRICS,
    log:
        "logs/autoencoder/{run}/sweep/{point}.log",
    benchmark:
        "results/benchmarks/import_autoencoder_point/{run}/{point}.tsv"
    wildcard_constraints:
        point=points_pattern(decisions.brought_points(config)),
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("autoencoder")
    resources:
        **resources_of("autoencoder", gpu=True),
    params:
        sha256=lambda w: decisions.autoencoder_sweep(config)[w.point]["sha256"],
    script:
        "../scripts/import_autoencoder.py"


rule purify_attack:
    input:
        unpack(purifier_models),
        attack=ATTACK,
        model=CLASSIFIER,
        data=DATA,  # the attack file is checked against it (positions, labels, norms)
    output:
        PURIFIED_ATTACK,
    log:
        "logs/purified/{run}/{purifier}/{attack}/eps{eps}/{split}.log",
    benchmark:
        "results/benchmarks/purify_attack/{run}/{purifier}/{attack}/eps{eps}/{split}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("purification")
    resources:
        **resources_of("purification", gpu=True),
    params:
        settings=purifier_settings,
    script:
        "../scripts/purify.py"


rule purify_clean:
    input:
        unpack(purifier_models),
        data=DATA,
        model=CLASSIFIER,
    output:
        PURIFIED_CLEAN,
    log:
        "logs/purified/{run}/{purifier}/clean/{split}.log",
    benchmark:
        "results/benchmarks/purify_clean/{run}/{purifier}/clean/{split}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("purification")
    resources:
        **resources_of("purification", gpu=True),
    params:
        settings=purifier_settings,
        images=attacked_count,
        seed=seed_of,
    script:
        "../scripts/purify.py"


rule adaptive_attack:
    input:
        unpack(purifier_models),
        data=DATA,
        model=CLASSIFIER,
    output:
        ADAPTIVE,
    log:
        "logs/adaptive/{run}/{purifier}/{attack}/eps{eps}.log",
    benchmark:
        "results/benchmarks/adaptive_attack/{run}/{purifier}/{attack}/eps{eps}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("attack_defaults")
    resources:
        **resources_of("attack_defaults", gpu=True),
    params:
        settings=purifier_settings,
        job=lambda w: attack_job_params(w, split="test"),  # the attack's record on the test images
        adaptive_images=config["purification"]["adaptive"]["images"],
        restarts=config["purification"]["adaptive"]["restarts"],
        overrides=lambda w: canonical(
            config["purification"]["adaptive"]["params"].get(w.attack, {})
        ),
        eot_samples=adaptive_eot_samples,
        seed=seed_of,
    script:
        "../scripts/adaptive_attack.py"


rule table3:
    input:
        purified=lambda w: table3_inputs(w.run)["purified"],
        adaptive=lambda w: table3_inputs(w.run)["adaptive"],
        clean=lambda w: table3_inputs(w.run)["clean"],
    output:
        csv=report(
            path(TABLE, table="table3_purification.csv"),
            caption="../report/table.rst",
            category="Tables",
            subcategory="Table 3",
        ),
        md=path(TABLE, table="table3_purification.md"),
    log:
        "logs/tables/{run}/table3.log",
    benchmark:
        "results/benchmarks/table3/{run}/table3.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        columns=table3_columns(),
        purifiers=decisions.purifiers(config),
        gradient_free=decisions.gradient_free_attacks(config),
    script:
        "../scripts/table3.py"


rule autoencoder_sweep:
    input:
        metrics=lambda w: sweep_inputs(w.run)["metrics"],
        clean=lambda w: sweep_inputs(w.run)["clean"],
        purified=lambda w: sweep_inputs(w.run)["purified"],
        adaptive=lambda w: sweep_inputs(w.run)["adaptive"],
        attacks=lambda w: sweep_inputs(w.run)["attacks"],
    output:
        csv=report(
            path(TABLE, table=AUTOENCODER_SWEEP_TABLE),
            caption="../report/table.rst",
            category="Tables",
            subcategory="Autoencoder sweep",
        ),
        by_size=path(TABLE, table=AUTOENCODER_SWEEP_BY_SIZE),
        figure=report(
            path(FIGURE, figure=AUTOENCODER_SWEEP_FIGURE),
            caption="../report/autoencoder_sweep.rst",
            category="Figures",
        ),
    log:
        "logs/tables/{run}/autoencoder_sweep.log",
    benchmark:
        "results/benchmarks/autoencoder_sweep/{run}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    threads: threads_of("light_jobs")
    resources:
        **resources_of("light_jobs"),
    params:
        # [[point, its settings], ...] in the config's order (the inputs' order)
        points=lambda w: [
            [p, canonical(s)] for p, s in decisions.autoencoder_sweep(config).items()
        ],
        columns=lambda w: [[a, e] for a, e in decisions.sweep_columns(config)],
        adaptive=lambda w: (
            list(decisions.sweep_adaptive(config))
            if decisions.sweep_adaptive(config)
            else None
        ),
    script:
        "../scripts/autoencoder_sweep.py"
