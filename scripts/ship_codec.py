"""Turn a trained codec into a shipped asset: weights only, float16, official layout, with its id recorded.

    python scripts/ship_codec.py results/demo_from_scratch/codec assets/codec/demo-75hz

Reads `codec.ckpt` + `codec.yaml` (and `codec.metrics.json`) from a `train_codec` output folder and writes
PREFIX.ckpt (a Lightning-layout checkpoint holding only the generator's state_dict, float tensors stored
as float16), PREFIX.yaml, and PREFIX.json: the `codec_id` of the codec as it loads from PREFIX.ckpt (what
`extract_codes` writes into every code table), its size, and the training run it came from. The test
suite loads the asset and checks that id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from stages.codec import codec_id, load_codec, save_codec

MAX_BYTES = 32 * 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codec_dir", type=Path, help="a train_codec output folder")
    parser.add_argument("prefix", type=Path, help="output path without suffix, e.g. assets/codec/demo-75hz")
    parser.add_argument("--recipe", default="configs/demo_from_scratch.yaml", help="the config that trains it")
    args = parser.parse_args(argv)
    trained = load_codec(args.codec_dir / "codec.yaml", args.codec_dir / "codec.ckpt")
    source = torch.load(args.codec_dir / "codec.ckpt", map_location="cpu", weights_only=True)
    args.prefix.parent.mkdir(parents=True, exist_ok=True)
    ckpt, yaml_path = args.prefix.with_suffix(".ckpt"), args.prefix.with_suffix(".yaml")
    save_codec(trained, ckpt, yaml_path, global_step=source.get("global_step", 0),
               training={k: v for k, v in source.get("hyper_parameters", {}).items() if k != "sample_rate"},
               weights_dtype=torch.float16)
    if ckpt.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{ckpt} is {ckpt.stat().st_size / 2**20:.1f} MiB, over the 32 MiB an asset may take")
    shipped = load_codec(yaml_path, ckpt)
    record = {"codec_id": codec_id(shipped), "trained_codec_id": codec_id(trained),
              "parameters": sum(v.numel() for v in shipped.state_dict().values()),
              "checkpoint_bytes": ckpt.stat().st_size, "weights_dtype": "float16", "recipe": args.recipe,
              "global_step": source.get("global_step", 0), "frame_rate": shipped.frame_rate,
              "sample_rate": shipped.sample_rate,
              "training": json.loads((args.codec_dir / "codec.metrics.json").read_text())}
    args.prefix.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
