# Stage 2: manifest -> 24 kHz mono FLAC shards, one job per shard.


rule resample:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        code=stage_sources("resample"),
    output:
        audio=f"{RESULTS}/audio/shard-{{shard}}.parquet",
        quarantine=f"{RESULTS}/audio/quarantine-{{shard}}.parquet",
    params:
        config=section_json(CFG.audio),
        shard=lambda wildcards: int(wildcards.shard),
        num_shards=CFG.shards,
    log:
        f"{LOGS}/resample/{{shard}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    shell:
        "python -m stages.resample --manifest {input.manifest:q} --shard {params.shard} --num-shards {params.num_shards}"
        " --config-json {params.config:q} --out {output.audio:q} --quarantine {output.quarantine:q}"
        " --threads {threads} 2> {log:q}"
