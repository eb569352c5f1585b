"""Official WavTokenizer checkpoints in and out: Lightning `.ckpt` + YAML <-> `WavTokenizer`.

    python -m stages.codec encode CONFIG.yaml CHECKPOINT.ckpt IN.wav OUT.npy   # the CLI that uses this

`load_codec` reads the YAML's `model.init_args` tree into a `CodecArch`, builds the model and loads the
checkpoint's generator weights strictly. It keeps the keys the official `from_pretrained0802` keeps
(`feature_extractor.*`, `backbone.*`, `head.*`) and drops the discriminators and loss buffers. The file is
read with `torch.load(weights_only=True)`: a checkpoint holds data, and one that would run code is refused.
Anything that does not fit raises `CodecLoadError` naming the file and what is wrong.

`save_codec` writes the same layout back (a Lightning-style checkpoint plus the YAML), so a codec trained
here loads in the official code and in ours.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from stages.codec.model import CodecArch, WavTokenizer
from stages.config import ConfigError, from_dict, to_dict

GENERATOR_PREFIXES = ("feature_extractor.", "backbone.", "head.")
CLASS_PATHS = {
    "feature_extractor": "decoder.feature_extractors.EncodecFeatures",
    "backbone": "decoder.models.VocosBackbone",
    "head": "decoder.heads.ISTFTHead",
}
REQUIRED = object()
# The official constructors' keyword arguments with their defaults. `seanet_n_filters` and `seanet_dimension`
# are not official: the reference fixture adds them, and the official code hardcodes 32/512.
INIT_ARGS: dict[str, dict[str, Any]] = {
    "feature_extractor": {"encodec_model": "encodec_24khz", "bandwidths": [1.5, 3.0, 6.0, 12.0],
                          "train_codebooks": False, "num_quantizers": 1, "dowmsamples": [6, 5, 5, 4],
                          "vq_bins": 16384, "vq_kmeans": 800, "seanet_n_filters": 32, "seanet_dimension": 512,
                          "latent_norm": "none"},
    "backbone": {"input_channels": REQUIRED, "dim": REQUIRED, "intermediate_dim": REQUIRED, "num_layers": REQUIRED,
                 "layer_scale_init_value": None, "adanorm_num_embeddings": None},
    "head": {"dim": REQUIRED, "n_fft": REQUIRED, "hop_length": REQUIRED, "padding": "same"},
}
MAX_KEYS_LISTED = 8


class CodecLoadError(ValueError):
    """A codec YAML or checkpoint cannot be used; the message names the file and the problem."""


def load_codec(config_path: str | Path, checkpoint_path: str | Path, device: str | torch.device = "cpu"
               ) -> WavTokenizer:
    """Build the model the YAML describes and load the checkpoint's generator into it (eval mode)."""
    arch = read_arch(config_path)
    state = read_generator_state(checkpoint_path)
    model = WavTokenizer(arch)
    check_state_matches(model, state, checkpoint_path, config_path)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def read_arch(config_path: str | Path) -> CodecArch:
    """The `model.init_args` tree of an official WavTokenizer training YAML, as a `CodecArch`."""
    path = Path(config_path)
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise CodecLoadError(f"{path}: cannot read the codec YAML ({e})") from e
    return arch_from_yaml_tree(tree, str(path))


def arch_from_yaml_tree(tree: Any, path: str = "codec YAML") -> CodecArch:
    """`CodecArch` from a parsed official YAML (`model.init_args.{feature_extractor,backbone,head}`)."""
    init = _mapping(tree, path, "model", "init_args")
    parts = {}
    for part, known in INIT_ARGS.items():
        node = _mapping(init, path, part)
        if node.get("class_path") != CLASS_PATHS[part]:
            raise CodecLoadError(f"{path}: model.init_args.{part}.class_path is {node.get('class_path')!r}; "
                                 f"only {CLASS_PATHS[part]!r} is supported")
        args = node.get("init_args") or {}
        unknown = sorted(set(args) - set(known))
        if unknown:
            raise CodecLoadError(f"{path}: unknown key(s) in model.init_args.{part}.init_args: {', '.join(unknown)}")
        missing = [k for k, default in known.items() if default is REQUIRED and k not in args]
        if missing:
            raise CodecLoadError(f"{path}: model.init_args.{part}.init_args lacks {', '.join(missing)}")
        parts[part] = {**known, **args}
    fe, bb, hd = parts["feature_extractor"], parts["backbone"], parts["head"]
    where = f"{path}: model.init_args"
    if fe["encodec_model"] != "encodec_24khz":
        raise CodecLoadError(f"{where}.feature_extractor.init_args.encodec_model: only 'encodec_24khz' exists")
    if hd["padding"] != "same":
        raise CodecLoadError(f"{where}.head.init_args.padding: only 'same' is supported (all published models use it)")
    if bb["input_channels"] != fe["seanet_dimension"]:
        raise CodecLoadError(f"{where}.backbone.init_args.input_channels: {bb['input_channels']} differs from the "
                             f"encoder dimension {fe['seanet_dimension']}")
    if hd["dim"] != bb["dim"]:
        raise CodecLoadError(f"{where}.head.init_args.dim: {hd['dim']} differs from backbone dim {bb['dim']}")
    values = {
        "sample_rate": init.get("sample_rate", 24000), "downsamples": fe["dowmsamples"],
        "seanet_n_filters": fe["seanet_n_filters"], "seanet_dimension": fe["seanet_dimension"],
        "codebook_size": fe["vq_bins"], "num_quantizers": fe["num_quantizers"], "kmeans_iters": fe["vq_kmeans"],
        "bandwidths": fe["bandwidths"], "latent_norm": fe["latent_norm"], "backbone_dim": bb["dim"], "backbone_intermediate_dim": bb["intermediate_dim"],
        "backbone_layers": bb["num_layers"], "layer_scale_init_value": bb["layer_scale_init_value"],
        "adanorm_num_embeddings": bb["adanorm_num_embeddings"], "n_fft": hd["n_fft"], "hop_length": hd["hop_length"],
    }
    try:
        return from_dict(CodecArch, values, f"{path}")
    except ConfigError as e:
        raise CodecLoadError(str(e)) from e


def _mapping(tree: Any, path: str, *keys: str) -> dict:
    node, where = tree, ""
    for key in keys:
        where = f"{where}.{key}" if where else key
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            raise CodecLoadError(f"{path}: expected a mapping at {where} (an official WavTokenizer training YAML)")
        node = node[key]
    return node


def read_generator_state(checkpoint_path: str | Path) -> dict[str, torch.Tensor]:
    """The generator tensors of a Lightning checkpoint (discriminator and loss tensors dropped)."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise CodecLoadError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zips, garbage bytes, unsafe pickles: all reported below
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if isinstance(e, pickle.UnpicklingError) and unsafe:
            raise CodecLoadError(f"{path}: refused: unpickling it would call {unsafe.group(1)}, i.e. would run code; "
                                 "a checkpoint may only hold tensors and plain containers") from e
        unpickler = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
        detail = unpickler.group(1) if unpickler else (str(e).strip().splitlines() or [""])[0]
        raise CodecLoadError(f"{path}: not a readable PyTorch checkpoint, corrupt or truncated "
                             f"({type(e).__name__}: {detail})") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CodecLoadError(f"{path}: not a Lightning checkpoint (no 'state_dict' mapping at the top level)")
    state = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(GENERATOR_PREFIXES)}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CodecLoadError(f"{path}: state_dict entries that are not tensors: {_listed(bad)}")
    return state


def check_state_matches(model: WavTokenizer, state: dict[str, torch.Tensor], checkpoint_path: str | Path,
                        config_path: str | Path) -> None:
    """Raise CodecLoadError unless `state` has exactly the model's keys and shapes and a trained codebook."""
    expected = model.state_dict()
    hint = f"does {config_path} describe this checkpoint?"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_listed(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_listed(unexpected)}")
        raise CodecLoadError(f"{checkpoint_path}: generator keys do not match the model ({'; '.join(parts)}); {hint}")
    wrong = [f"{k} is {list(state[k].shape)} in the checkpoint, {list(v.shape)} in the model"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CodecLoadError(f"{checkpoint_path}: {len(wrong)} tensor shape(s) differ: {'; '.join(wrong[:4])}; {hint}")
    for key, value in state.items():
        if key.endswith("._codebook.inited") and not bool((value != 0).all()):
            raise CodecLoadError(f"{checkpoint_path}: {key} is 0: the codebook was never initialised. The official "
                                 "code would silently run k-means on your audio; train or fetch a trained codec")


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_KEYS_LISTED])
    return shown + (f", ... ({len(keys) - MAX_KEYS_LISTED} more)" if len(keys) > MAX_KEYS_LISTED else "")


def codec_id(model: WavTokenizer) -> str:
    """Stable id of a codec (sizes + weights): equal ids mean equal codes, so code tables can say which codec made them."""
    digest = hashlib.sha256(json.dumps(to_dict(model.arch), sort_keys=True).encode())
    for key, value in sorted(model.state_dict().items()):
        value = value.detach().to("cpu").contiguous()
        digest.update(f"{key}:{value.dtype}:{list(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def arch_to_yaml_tree(arch: CodecArch, training: dict[str, Any] | None = None) -> dict:
    """An official-layout YAML tree (`model.class_path` + `init_args`) for `arch`.

    `seanet_n_filters`/`seanet_dimension` and `latent_norm` are written only when they differ from the
    official 32/512/none, so a full-size official-style codec's YAML is one the unmodified official code accepts.
    """
    fe: dict[str, Any] = {"encodec_model": "encodec_24khz", "bandwidths": list(arch.bandwidths), "train_codebooks": True,
                          "num_quantizers": arch.num_quantizers, "dowmsamples": list(arch.downsamples),
                          "vq_bins": arch.codebook_size, "vq_kmeans": arch.kmeans_iters}
    if (arch.seanet_n_filters, arch.seanet_dimension) != (32, 512):
        fe.update(seanet_n_filters=arch.seanet_n_filters, seanet_dimension=arch.seanet_dimension)
    if arch.latent_norm != "none":
        fe["latent_norm"] = arch.latent_norm
    bb: dict[str, Any] = {"input_channels": arch.seanet_dimension, "dim": arch.backbone_dim,
                          "intermediate_dim": arch.backbone_intermediate_dim, "num_layers": arch.backbone_layers,
                          "adanorm_num_embeddings": arch.adanorm_num_embeddings}
    if arch.layer_scale_init_value is not None:
        bb["layer_scale_init_value"] = arch.layer_scale_init_value
    init_args = {"sample_rate": arch.sample_rate, **(training or {}),
                 "feature_extractor": {"class_path": CLASS_PATHS["feature_extractor"], "init_args": fe},
                 "backbone": {"class_path": CLASS_PATHS["backbone"], "init_args": bb},
                 "head": {"class_path": CLASS_PATHS["head"], "init_args": {
                     "dim": arch.backbone_dim, "n_fft": arch.n_fft, "hop_length": arch.hop_length, "padding": "same"}}}
    return {"model": {"class_path": "decoder.experiment.WavTokenizer", "init_args": init_args}}


def save_codec(model: WavTokenizer, checkpoint_path: str | Path, config_path: str | Path, *,
               extra_state: dict[str, torch.Tensor] | None = None, global_step: int = 0, epoch: int = 0,
               training: dict[str, Any] | None = None, weights_dtype: torch.dtype = torch.float32) -> None:
    """Write `model` as an official-layout Lightning checkpoint + YAML (each file written atomically).

    `extra_state` (e.g. discriminator weights under `multiperioddisc.*`) goes into the same state_dict, as in
    the official checkpoints; loaders drop it. `weights_dtype` float16 halves a shipped checkpoint: floating
    tensors are stored rounded, and `load_state_dict` casts them back to the model's float32.
    """
    from stages.common.atomic import atomic_output

    state = {k: (v.to(weights_dtype) if v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    state.update({k: v.detach().cpu().clone() for k, v in (extra_state or {}).items()})
    ckpt = {"epoch": epoch, "global_step": global_step, "pytorch-lightning_version": "1.8.6", "state_dict": state,
            "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": [], "hparams_name": "kwargs",
            "hyper_parameters": {"sample_rate": model.arch.sample_rate, **(training or {})}}
    tree = arch_to_yaml_tree(model.arch, training)
    with atomic_output(Path(config_path)) as tmp:
        tmp.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    with atomic_output(Path(checkpoint_path)) as tmp:
        torch.save(ckpt, tmp)
