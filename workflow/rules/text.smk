# Stage 4: the text normaliser and sentencepiece model, fitted on the training transcripts.


rule fit_tokenizer:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        code=stage_sources("fit_tokenizer"),
    output:
        directory(f"{RESULTS}/tokenizer"),
    params:
        config=section_json(CFG.tokenizer),
    log:
        f"{LOGS}/fit_tokenizer.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "python -m stages.fit_tokenizer --manifest {input.manifest:q} --out-dir {output:q}"
        " --config-json {params.config:q} 2> {log:q}"
