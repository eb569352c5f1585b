# Stages 5-6: LM pretraining and SFT, one DeepSpeed trainer (stages.train_lm) with two config sections,
# each named by --section in the errors about it.
# Processes come from the rule's resources (workflow/scripts/torchrun.sh): one per GPU, resources.gpu in all over
# resources.nodes nodes, or one CPU process; the resumable checkpoints live beside the declared output, so a
# failed or killed job resumes instead of restarting.


rule pretrain:
    input:
        codes=code_shards(),
        tokenizer=f"{RESULTS}/tokenizer",
        preset=model_preset(CFG.pretrain),
        deepspeed=deepspeed_config(CFG.pretrain),
        code=stage_sources("train_lm"),
        launcher=repo_path("workflow/scripts/torchrun.sh"),
    output:
        directory(f"{RESULTS}/pretrain/model"),
    params:
        config=section_json(CFG.pretrain),
        checkpoints=f"{RESULTS}/pretrain/checkpoints",
    log:
        f"{LOGS}/pretrain.log",
    threads: 8  # capped at --cores when run locally
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=GPU_LIMIT,  # every GPU the run may use (common.smk); the cluster profiles set their own
        nodes=1,
    shell:
        "bash {input.launcher:q} {resources.nodes} {resources.gpu} -m stages.train_lm --codes {input.codes:q}"
        " --tokenizer {input.tokenizer:q} --out-dir {output:q} --checkpoint-dir {params.checkpoints:q}"
        " --section pretrain --config-json {params.config:q} --threads {threads} 2> {log:q}"


rule sft:
    input:
        codes=code_shards(),
        tokenizer=f"{RESULTS}/tokenizer",
        init=f"{RESULTS}/pretrain/model",
        deepspeed=deepspeed_config(CFG.sft),
        code=stage_sources("train_lm"),
        launcher=repo_path("workflow/scripts/torchrun.sh"),
    output:
        directory(f"{RESULTS}/sft/model"),
    params:
        config=section_json(CFG.sft),
        checkpoints=f"{RESULTS}/sft/checkpoints",
    log:
        f"{LOGS}/sft.log",
    threads: 8  # capped at --cores when run locally
    resources:
        mem_mb=8000,
        runtime=12 * 60,
        gpu=GPU_LIMIT,  # every GPU the run may use (common.smk); the cluster profiles set their own
        nodes=1,
    shell:
        "bash {input.launcher:q} {resources.nodes} {resources.gpu} -m stages.train_lm --codes {input.codes:q}"
        " --tokenizer {input.tokenizer:q} --init-from {input.init:q} --out-dir {output:q}"
        " --checkpoint-dir {params.checkpoints:q} --section sft --config-json {params.config:q} --threads {threads}"
        " 2> {log:q}"
