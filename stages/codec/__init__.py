"""WavTokenizer codec, compatible with the official checkpoints: waveforms <-> single-codebook codes.

    python -m stages.codec encode CONFIG.yaml CHECKPOINT.ckpt IN.wav OUT.npy
    python -m stages.codec decode CONFIG.yaml CHECKPOINT.ckpt IN.npy OUT.wav

From Python:

    codec = load_codec("codec.yaml", "codec.ckpt")          # eval mode; CodecLoadError if anything is off
    codes, code_lengths = codec.encode(wavs, lengths)        # (B, N) 24 kHz, (B,) -> (B, T) long, (B,)
    audio = codec.decode(codes, code_lengths)                # (B, T * hop); zeros past code_lengths * hop
    codec.sample_rate, codec.hop_length, codec.frame_rate    # 24000, 600, 40.0 for the 40/s model
    codec_id(codec)                                          # hash of sizes + weights, for table metadata

Batching never changes results: each item is encoded and decoded exactly as it would be alone.
"""

from stages.codec.loader import CodecLoadError, codec_id, load_codec, save_codec
from stages.codec.model import CodecArch, WavTokenizer

__all__ = ["CodecArch", "CodecLoadError", "WavTokenizer", "codec_id", "load_codec", "save_codec"]
