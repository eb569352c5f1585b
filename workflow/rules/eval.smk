# Stages 7-9: evaluation samples, offline scores (codec ceiling first, then the models) and the report pages.


rule codec_eval:
    input:
        audio=audio_shards(),
        codes=code_shards(),
        codec_config=codec_file("config"),
        codec_checkpoint=codec_file("checkpoint"),
        code=stage_sources("codec_eval"),
    output:
        directory(f"{RESULTS}/codec_eval"),
    params:
        config=section_json(CFG.eval),
    log:
        f"{LOGS}/codec_eval.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "python -m stages.codec_eval --audio {input.audio:q} --codes {input.codes:q}"
        " --codec-config {input.codec_config:q} --codec-checkpoint {input.codec_checkpoint:q}"
        " --config-json {params.config:q} --out {output:q} --threads {threads} 2> {log:q}"


rule synthesize:
    input:
        model=f"{RESULTS}/{{model}}/model",
        codes=code_shards(),
        codec_config=codec_file("config"),
        codec_checkpoint=codec_file("checkpoint"),
        code=stage_sources("synthesize"),
    output:
        directory(f"{RESULTS}/samples/{{model}}"),
    params:
        config=section_json(CFG.eval.synthesis),
        model=lambda wildcards: wildcards.model,
    log:
        f"{LOGS}/synthesize/{{model}}.log",
    threads: 8  # capped at --cores when run locally
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,  # one GPU when the run has one (common.smk); else the CPU
    shell:
        "MINIMIND_GPUS={resources.gpu} python -m stages.synthesize --model {input.model:q} --codes {input.codes:q}"
        " --codec-config {input.codec_config:q} --codec-checkpoint {input.codec_checkpoint:q}"
        " --config-json {params.config:q} --out {output:q} --threads {threads} 2> {log:q}"


rule evaluate:
    input:
        baseline=f"{RESULTS}/codec_eval",
        samples=expand(f"{RESULTS}/samples/{{model}}", model=MODELS),
        audio=audio_shards(),
        code=stage_sources("evaluate"),
    output:
        directory(f"{RESULTS}/eval"),
    params:
        config=section_json(CFG.eval),
        samples=named_samples,
    log:
        f"{LOGS}/evaluate.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "python -m stages.evaluate --audio {input.audio:q} --baseline {input.baseline:q}"
        " --samples {params.samples:q} --config-json {params.config:q} --out {output:q} --threads {threads}"
        " 2> {log:q}"


rule report_pages:
    input:
        eval=f"{RESULTS}/eval",
        codec_eval=f"{RESULTS}/codec_eval",
        samples=expand(f"{RESULTS}/samples/{{model}}", model=MODELS),
        models=expand(f"{RESULTS}/{{model}}/model", model=MODELS),
        codec=trained_codec_metrics(),  # its TensorBoard folder is drawn, not read as an input
        code=stage_sources("report_pages"),
    output:
        samples=report(f"{RESULTS}/report/samples.html", caption="../report/samples.rst", category="Samples"),
        metrics=report(f"{RESULTS}/report/metrics.html", caption="../report/metrics.rst", category="Metrics"),
        transcripts=report(f"{RESULTS}/report/transcripts.html", caption="../report/transcripts.rst",
                           category="Metrics"),
        curves=report(f"{RESULTS}/report/curves.html", caption="../report/curves.rst", category="Training"),
        config=report(f"{RESULTS}/report/config.html", caption="../report/config.rst", category="Configuration"),
    params:
        samples=named_samples,
        curves=training_curves(),
        config=section_json(CFG),
        out_dir=lambda wildcards, output: str(Path(output.samples).parent),
    log:
        f"{LOGS}/report_pages.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m stages.report_pages --eval {input.eval:q} --codec-eval {input.codec_eval:q}"
        " --samples {params.samples:q} --curves {params.curves:q}"
        " --config-json {params.config:q} --out {params.out_dir:q} 2> {log:q}"
