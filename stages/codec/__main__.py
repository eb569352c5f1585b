"""Encode audio to WavTokenizer codes and decode codes to audio, with an official config + checkpoint.

    python -m stages.codec encode CONFIG.yaml CHECKPOINT.ckpt IN.wav OUT.npy   # int64 codes, shape (1, 1, T)
    python -m stages.codec decode CONFIG.yaml CHECKPOINT.ckpt IN.npy OUT.wav   # 24 kHz 16-bit WAV
    python -m stages.codec decode CONFIG.yaml CHECKPOINT.ckpt IN.npy OUT.npy   # float32 samples, shape (1, N)

`encode` converts the input as the official code does (channel mean, torchaudio resample to the codec's
rate) and writes codes shaped like the official `encode_infer` output (codebooks, batch, frames).
`decode` uses bandwidth id 0, as the official examples do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from stages.common.atomic import atomic_output
from stages.codec.audio_io import read_for_codec, write_wav
from stages.codec.loader import CodecLoadError, load_codec


def encode_file(config: Path, checkpoint: Path, audio_in: Path, codes_out: Path) -> np.ndarray:
    model = load_codec(config, checkpoint)
    wav = read_for_codec(audio_in, model.sample_rate)
    codes, _ = model.encode(wav)
    out = codes.numpy().astype(np.int64)[None]  # (n_q=1, B=1, T)
    with atomic_output(codes_out) as tmp, open(tmp, "wb") as f:
        np.save(f, out)
    return out


def decode_file(config: Path, checkpoint: Path, codes_in: Path, audio_out: Path) -> np.ndarray:
    model = load_codec(config, checkpoint)
    codes = np.load(codes_in, allow_pickle=False)
    if codes.ndim == 3:  # official (codebooks, batch, frames): WavTokenizer decodes the first codebook
        codes = codes[0]
    codes = codes.reshape(1, -1) if codes.ndim == 1 else codes
    if codes.ndim != 2 or codes.shape[0] != 1 or codes.shape[1] == 0 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"{codes_in}: expected integer codes of shape (1, 1, T), (1, T) or (T,), "
                         f"got {codes.dtype} {codes.shape}")
    if codes.min() < 0 or codes.max() >= model.arch.codebook_size:
        raise ValueError(f"{codes_in}: codes must lie in 0..{model.arch.codebook_size - 1}, "
                         f"found {codes.min()}..{codes.max()}")
    audio = model.decode(torch.from_numpy(codes.astype(np.int64))).numpy().astype(np.float32)
    with atomic_output(audio_out) as tmp:
        if audio_out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, audio)
        else:
            write_wav(tmp, audio[0], model.sample_rate)
    return audio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.codec", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode", help="audio file -> int64 codes .npy of shape (1, 1, T)")
    dec = sub.add_parser("decode", help="codes .npy -> 24 kHz WAV, or float32 (1, N) samples if OUT ends in .npy")
    for p, (src, dst) in ((enc, ("IN_AUDIO", "OUT_NPY")), (dec, ("IN_NPY", "OUT"))):
        p.add_argument("config", type=Path, metavar="CONFIG.yaml")
        p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT.ckpt")
        p.add_argument("source", type=Path, metavar=src)
        p.add_argument("target", type=Path, metavar=dst)
    args = parser.parse_args(argv)
    run = encode_file if args.command == "encode" else decode_file
    try:
        run(args.config, args.checkpoint, args.source, args.target)
    except (CodecLoadError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
