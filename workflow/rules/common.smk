# Shared helpers for the rules: the typed config, output paths, stage sources and target lists.
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stages.config import PipelineConfig, from_dict, to_dict
from stages.importers import listing_digest
from stages.common.shards import shard_name
from stages.common.sources import module_sources

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


def visible_gpus():
    """The GPUs this machine shows a job: CUDA_VISIBLE_DEVICES when set, else nvidia-smi's list (torch-free)."""
    restricted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if restricted is not None:
        return len([d for d in restricted.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return listing.stdout.count("GPU ") if listing.returncode == 0 else 0


# The `gpu` resource. One-GPU rules ask for one, training for every GPU of the run's limit, and Snakemake
# scales a job's request down to that limit, as it does threads. The limit is `--resources gpu=N` or a
# profile's (the cluster profiles set one); without either it is this machine's GPU count. So on a CPU
# machine every GPU rule runs on the CPU (gpu=0), and on a one-GPU machine the GPU jobs take turns on the card
# instead of all starting at once on it. On a cluster the profiles' set-resources say what each job gets.
if "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", visible_gpus())
GPU_LIMIT = workflow.global_resources["gpu"].value
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


# Shared by the runs that speak the demo the same way, and free of the run name, so that a run that changes
# only later settings has the same between-workflow cache keys (params are part of the key, paths are not).
DEMO_CORPUS = f"results/demo_corpus/{hashlib.sha256(section_json(CFG.corpus.demo).encode()).hexdigest()[:12]}"


def corpus_root(wildcards):
    """The folder or table the importer reads: a param, since a corpus folder cannot be an input (below)."""
    return DEMO_CORPUS if CFG.corpus.format == "demo" else CFG.corpus.path


# A corpus folder (not the demo, not a table) is no input: Snakemake cannot hash a folder for the
# between-workflow cache, so `corpus_listing` stands for it.
CORPUS_FOLDER = CFG.corpus.format != "demo" and os.path.isdir(CFG.corpus.path)


def corpus_input():
    """What `prepare` depends on: the demo corpus, a corpus table, or nothing for a corpus folder."""
    if CFG.corpus.format == "demo":
        return DEMO_CORPUS
    return [] if CORPUS_FOLDER else CFG.corpus.path


@functools.cache
def _folder_digest():
    return listing_digest(CFG.corpus.path)


def corpus_listing(wildcards):
    """A digest of a corpus folder's file names and sizes ('' otherwise): edits to the folder rerun `prepare`.

    A param function, so only the jobs that need it (prepare, and cache keys downstream) walk the folder.
    """
    return _folder_digest() if CORPUS_FOLDER else ""


def audio_shards():
    return expand(f"{RESULTS}/audio/shard-{{shard}}.parquet", shard=SHARDS)


def code_shards():
    return expand(f"{RESULTS}/codes/shard-{{shard}}.parquet", shard=SHARDS)


# The files train_codec writes, named here once: one prefix, since Snakemake caches a multi-file output only
# as a multiext. Its state and TensorBoard logs go beside them, in the prefix's folder.
TRAINED_CODEC = f"{RESULTS}/codec/codec"
TRAINED_CODEC_FILES = {"checkpoint": ".ckpt", "config": ".yaml", "metrics": ".metrics.json"}


def codec_file(kind):
    """The codec's `config` (YAML) or `checkpoint`: trained by train_codec, or the official files configured."""
    if CFG.codec.source == "pretrained":
        return getattr(CFG.codec, kind)
    return TRAINED_CODEC + TRAINED_CODEC_FILES[kind]


def model_preset(train):
    return str(train.model_preset)


def deepspeed_config(train):
    return str(train.deepspeed_config)


def named_samples(wildcards, input):
    """NAME=FOLDER of each model's samples, as evaluate and report_pages take them."""
    return [f"{model}={folder}" for model, folder in zip(MODELS, input.samples)]


def training_curves():
    """NAME=TensorBoard folder of each training stage, for the report's curves."""
    codec = [] if CFG.codec.source == "pretrained" else [f"codec={RESULTS}/codec/tensorboard"]
    return [*codec, *(f"{m}={RESULTS}/{m}/checkpoints/tensorboard" for m in MODELS)]


def trained_codec_metrics():
    """The codec's training metrics, when this run trains its codec ([] for official weights)."""
    return [] if CFG.codec.source == "pretrained" else TRAINED_CODEC + TRAINED_CODEC_FILES["metrics"]


def all_targets():
    return [f"{RESULTS}/report/{page}.html" for page in ("samples", "metrics", "transcripts", "curves", "config")]
