# Stage 3: the WavTokenizer codec (trained here, or official weights) and the codes of every audio shard.


rule train_codec:
    input:
        audio=audio_shards(),
        preset=str(CFG.codec.train.preset_file),
        code=stage_sources("train_codec"),
    output:
        multiext(TRAINED_CODEC, **TRAINED_CODEC_FILES),  # named in common.smk, where codec_file reads them
    # Between-workflow cache (`snakemake --cache`): the key is the command, params, code and upstream
    # provenance, never a path, so no param here may hold one.
    cache: True
    params:
        config=section_json(CFG.codec.train),
    log:
        f"{LOGS}/train_codec.log",
    threads: 8  # capped at --cores when run locally
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=1,  # one GPU when the run has one (common.smk); else the CPU
    shell:
        "MINIMIND_GPUS={resources.gpu} python -m stages.train_codec {input.audio:q}"
        " --out-checkpoint {output.checkpoint:q} --out-config {output.config:q} --out-metrics {output.metrics:q}"
        " --config-json {params.config:q} --threads {threads} 2> {log:q}"


rule extract_codes:
    input:
        audio=f"{RESULTS}/audio/shard-{{shard}}.parquet",
        codec_config=codec_file("config"),
        codec_checkpoint=codec_file("checkpoint"),
        code=stage_sources("extract_codes"),
    output:
        f"{RESULTS}/codes/shard-{{shard}}.parquet",
    cache: True
    params:
        # Wildcards are not part of the cache key: without the shard here, every shard would share one entry.
        shard=lambda wildcards: wildcards.shard,
        batch_seconds=CFG.codec.batch_seconds,
    log:
        f"{LOGS}/extract_codes/{{shard}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=1,  # one GPU when the run has one (common.smk); else the CPU
    shell:
        "MINIMIND_GPUS={resources.gpu} python -m stages.extract_codes --audio {input.audio:q}"
        " --codec-config {input.codec_config:q} --codec-checkpoint {input.codec_checkpoint:q} --out {output:q}"
        " --batch-seconds {params.batch_seconds}"
        " --threads {threads} 2> {log:q}"
