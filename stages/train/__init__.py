"""Training the LM with DeepSpeed: one trainer for pretraining and SFT.

    torchrun --standalone --nproc_per_node 1 -m stages.train_lm --codes SHARD... --tokenizer DIR \
        --out-dir DIR --checkpoint-dir DIR [--config-json '{...}'] [--init-from MODEL_DIR]

config.py holds `TrainConfig`; data.py streams the codes Parquet into length-bucketed dynamic batches with a
resumable position; distributed.py starts the process group (CPU or GPU, one or many processes);
schedule.py is the learning-rate schedule; engine.py builds the DeepSpeed engine and runs one optimizer
step; checkpoint.py saves, finds and consolidates DeepSpeed checkpoints; metrics.py logs; loop.py is the
`Trainer` that ties them together, and stages/train_lm.py the stage that runs it.
"""
