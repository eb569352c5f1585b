"""Training the LM with DeepSpeed: one trainer for pretraining and SFT.

    torchrun --standalone --nproc_per_node 1 -m stages.train_lm --codes SHARD... --tokenizer DIR \
        --out-dir DIR --checkpoint-dir DIR --section pretrain|sft [--config-json '{...}'] [--init-from MODEL_DIR]

The data: corpus.py indexes the codes Parquet (which utterances, their text and lengths), batching.py plans
each epoch's length-bucketed dynamic batches from lengths alone, and data.py reads them into tensors from a
resumable position. The run: compat.py checks that shards, tokenizer and an initial model fit together;
distributed.py starts the process group (CPU or GPU, one or many processes); schedule.py is the warm-up +
cosine learning-rate schedule (the codec trainer's too); engine.py builds the DeepSpeed engine and runs one
optimizer step; checkpoint.py saves, finds and consolidates DeepSpeed checkpoints; resume.py decides whether
a checkpoint is this run's and restores it; metrics.py logs; consolidate.py turns the last checkpoint into a
model folder. loop.py is the `Trainer` that ties them together, and stages/train_lm.py the stage that runs it.
"""
