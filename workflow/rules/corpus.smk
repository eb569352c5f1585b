# Stages 0-1: the offline demo corpus and the manifest of any supported corpus.


rule demo_corpus:
    input:
        english=repo_path("data/demo/kjv_verses.tsv"),
        mandarin=repo_path("data/demo/tang_couplets.tsv"),
        code=stage_sources("demo_corpus"),
    output:
        directory(DEMO_CORPUS),
    params:
        config=section_json(CFG.corpus.demo),
    log:
        f"{LOGS}/demo_corpus.log",
    threads: 8  # capped at --cores when run locally
    resources:
        mem_mb=1000,
        runtime=30,
    shell:
        "python -m stages.demo_corpus --english {input.english:q} --mandarin {input.mandarin:q}"
        " --config-json {params.config:q} --out {output:q} --threads {threads} 2> {log:q}"


rule prepare:
    input:
        corpus=corpus_input(),
        code=stage_sources("prepare"),
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        quarantine=f"{RESULTS}/quarantine-prepare.parquet",
    params:
        config=section_json(CFG.corpus),
        corpus=corpus_root,
        listing=corpus_listing,
    log:
        f"{LOGS}/prepare.log",
    threads: 4
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "python -m stages.prepare --corpus {params.corpus:q} --config-json {params.config:q}"
        " --manifest {output.manifest:q} --quarantine {output.quarantine:q} --threads {threads} 2> {log:q}"
