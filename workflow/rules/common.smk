# Shared helpers for the rules: the typed config, output paths, stage sources and target lists.
import json
import os
import sys
from pathlib import Path

from stages.config import from_dict, to_dict
from stages.pipeline_config import PipelineConfig
from stages.shards import shard_name
from stages.sources import module_sources

REPO = Path(workflow.basedir)
CFG = from_dict(PipelineConfig, config)
RESULTS = f"results/{CFG.run}"
LOGS = f"{RESULTS}/logs"
# Jobs run `python` from the environment Snakemake itself runs in, so `.venv/bin/snakemake` works
# without activating the venv.
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
SHARDS = [shard_name(i) for i in range(CFG.shards)]
MODELS = ["pretrain", "sft"]


wildcard_constraints:
    shard=r"\d{5}",


def repo_path(relative):
    return str(REPO / relative)


def stage_sources(stage):
    """The stage's module and every stages.* module it imports: editing any of them reruns the stage."""
    return [str(path) for path in module_sources(f"stages.{stage}", REPO)]


def section_json(section):
    """A config section as compact JSON for a stage's --config-json (a param, so edits rerun the job)."""
    return json.dumps(to_dict(section), sort_keys=True, ensure_ascii=False)


def corpus_input():
    return f"{RESULTS}/demo_corpus" if CFG.corpus.format == "demo" else CFG.corpus.path


def corpus_location(wildcards, input):
    """The folder or table the importer reads: the demo corpus is a generic table inside its folder."""
    if CFG.corpus.format == "demo":
        return f"{input.corpus}/transcripts.csv"
    return input.corpus


def audio_shards():
    return expand(f"{RESULTS}/audio/shard-{{shard}}.parquet", shard=SHARDS)


def code_shards():
    return expand(f"{RESULTS}/codes/shard-{{shard}}.parquet", shard=SHARDS)


def codec_file(kind):
    """The codec's `config` (YAML) or `checkpoint`: trained by train_codec, or the official files configured."""
    if CFG.codec.source == "pretrained":
        return getattr(CFG.codec, kind)
    return f"{RESULTS}/codec/codec.{'yaml' if kind == 'config' else 'ckpt'}"


def model_preset(train):
    return str(train.model_preset)


def deepspeed_config(train):
    return str(train.deepspeed_config)


def training_curves():
    """NAME=TensorBoard folder of each training stage, for the report's curves."""
    return [f"codec={RESULTS}/codec/tensorboard",
            *(f"{m}={RESULTS}/{m}/checkpoints/tensorboard" for m in MODELS)]


def all_targets():
    return [f"{RESULTS}/report/{page}.html" for page in ("samples", "metrics", "curves", "config")]
