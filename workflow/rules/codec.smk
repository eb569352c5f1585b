# Stage 3: the WavTokenizer codec (trained here, or official weights) and the codes of every audio shard.


rule train_codec:
    input:
        audio=audio_shards(),
        code=stage_sources("codec.train"),
    output:
        checkpoint=f"{RESULTS}/codec/codec.ckpt",
        config=f"{RESULTS}/codec/codec.yaml",
        metrics=f"{RESULTS}/codec/metrics.json",
    params:
        config=section_json(CFG.codec.train),
        out_dir=lambda wildcards, output: str(Path(output.checkpoint).parent),
    log:
        f"{LOGS}/train_codec.log",
    threads: 8  # capped at --cores when run locally
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=0,
    shell:
        "python -m stages.codec.train {params.out_dir:q} {input.audio:q} --config-json {params.config:q}"
        " --threads {threads} 2> {log:q}"


rule extract_codes:
    input:
        audio=f"{RESULTS}/audio/shard-{{shard}}.parquet",
        codec_config=codec_file("config"),
        codec_checkpoint=codec_file("checkpoint"),
        code=stage_sources("extract_codes"),
    output:
        f"{RESULTS}/codes/shard-{{shard}}.parquet",
    params:
        batch_seconds=CFG.codec.batch_seconds,
    log:
        f"{LOGS}/extract_codes/{{shard}}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    shell:
        "python -m stages.extract_codes --audio {input.audio:q} --codec-config {input.codec_config:q}"
        " --codec-checkpoint {input.codec_checkpoint:q} --out {output:q} --batch-seconds {params.batch_seconds}"
        " --threads {threads} 2> {log:q}"
