"""The WavTokenizer generator: SEANet encoder + one VQ codebook -> Vocos backbone + ISTFT head.

    from stages.codec.loader import load_codec      # build + load an official checkpoint; see stages/codec/__init__.py

`CodecArch` holds every size the official YAML (`model.init_args`) fixes; `WavTokenizer(arch)` builds the
modules under the official names (`feature_extractor.encodec.{encoder,quantizer,decoder}`, `backbone`,
`head`), so official state dicts load strictly.

Inference API (what later stages call): `encode(wavs, lengths)` -> codes and code lengths, batched
with padding that does not change any code; `decode(codes, lengths)` -> waveforms; `sample_rate`,
`hop_length`, `frame_rate`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stages.config.codec import CodecArch
from stages.codec.quantizer import ResidualVectorQuantizer
from stages.codec.seanet import SEANetDecoder, SEANetEncoder
from stages.codec.vocos import ISTFTHead, VocosBackbone

# EncodecFeatures hardcodes the unused SEANet decoder's ratios, whatever the encoder's.
SEANET_DECODER_RATIOS = (8, 5, 4, 2)


class EncodecModel(nn.Module):
    """Holder that gives the official `encodec.{encoder,quantizer,decoder}` prefixes."""

    def __init__(self, arch: CodecArch):
        super().__init__()
        self.encoder = SEANetEncoder(arch.downsamples, arch.seanet_n_filters, arch.seanet_dimension)
        self.quantizer = ResidualVectorQuantizer(arch.seanet_dimension, arch.num_quantizers, arch.codebook_size,
                                                 arch.kmeans_iters)
        self.decoder = SEANetDecoder(SEANET_DECODER_RATIOS, arch.seanet_n_filters, arch.seanet_dimension)


class EncodecFeatures(nn.Module):
    def __init__(self, arch: CodecArch):
        super().__init__()
        self.encodec = EncodecModel(arch)


class WavTokenizer(nn.Module):
    def __init__(self, arch: CodecArch):
        super().__init__()
        self.arch = arch
        self.feature_extractor = EncodecFeatures(arch)
        self.backbone = VocosBackbone(arch.seanet_dimension, arch.backbone_dim, arch.backbone_intermediate_dim,
                                      arch.backbone_layers, arch.layer_scale_init_value, arch.adanorm_num_embeddings)
        self.head = ISTFTHead(arch.backbone_dim, arch.n_fft, arch.hop_length)

    @property
    def sample_rate(self) -> int:
        return self.arch.sample_rate

    @property
    def hop_length(self) -> int:
        return self.arch.hop_length

    @property
    def frame_rate(self) -> float:
        return self.arch.sample_rate / self.arch.hop_length

    @property
    def encoder(self) -> SEANetEncoder:
        return self.feature_extractor.encodec.encoder

    @property
    def quantizer(self) -> ResidualVectorQuantizer:
        return self.feature_extractor.encodec.quantizer

    def code_lengths(self, lengths: Tensor) -> Tensor:
        """Codes per waveform of `lengths` samples: ceil(N / hop)."""
        return self.encoder.output_lengths(lengths)

    def latents(self, wavs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Encoder output as the VQ sees it: (B, N) -> (B, D, T); frames past an item's code length are padding."""
        latents = self.encoder(wavs.unsqueeze(1), lengths)
        return F.normalize(latents, dim=1) if self.arch.latent_norm == "l2" else latents

    @torch.inference_mode()
    def encode(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """24 kHz mono waveforms (B, N), zero-padded after `lengths` -> codes (B, T) long and code lengths (B,).

        Each item's codes equal what encoding it alone would give; codes past its length are 0.
        """
        lengths = _lengths_or_full(wavs, lengths)
        code_lengths = self.code_lengths(lengths)
        with _full_precision(wavs.device.type):
            codes = self.quantizer.codebook.encode(self.latents(wavs, lengths).transpose(1, 2))
        codes = codes[:, : int(code_lengths.max())]
        return codes.masked_fill(~_valid(code_lengths, codes.shape[1]), 0), code_lengths

    def features(self, codes: Tensor) -> Tensor:
        """Codes (B, T) -> codebook rows (B, D, T), the decoder's input."""
        return self.quantizer.decode(codes)

    def decode_features(self, features: Tensor, lengths: Tensor | None = None, bandwidth_id: int = 0) -> Tensor:
        """Codebook features (B, D, T) -> waveforms (B, T * hop); samples past lengths * hop are zero."""
        cond = torch.tensor([bandwidth_id], device=features.device)
        mask = None
        if lengths is not None and bool((lengths != features.shape[-1]).any()):
            mask = _valid(lengths, features.shape[-1])[:, None, :].to(features.dtype)
        return self.head(self.backbone(features, cond, mask), mask)

    @torch.inference_mode()
    def decode(self, codes: Tensor, lengths: Tensor | None = None, bandwidth_id: int = 0) -> Tensor:
        """Codes (B, T) -> 24 kHz waveforms (B, T * hop); item i has lengths[i] * hop valid samples, then zeros.

        Each item's audio equals what decoding it alone would give.
        """
        return self.decode_features(self.features(codes), lengths, bandwidth_id)


@contextlib.contextmanager
def _full_precision(device_type: str) -> Iterator[None]:
    """Encode in true fp32: no TF32 (cuDNN's or cuBLAS's, whatever a trainer in this process allowed) and no
    autocast; their ~1e-3 relative error would move codes across GPUs and CPUs."""
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def _lengths_or_full(wavs: Tensor, lengths: Tensor | None) -> Tensor:
    if wavs.dim() != 2:
        raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(wavs.shape)}")
    if lengths is None:
        return torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long, device=wavs.device)
    lengths = lengths.to(device=wavs.device, dtype=torch.long)
    if lengths.shape != (wavs.shape[0],) or bool((lengths < 1).any()) or bool((lengths > wavs.shape[1]).any()):
        raise ValueError(f"lengths must be (batch,) values in 1..{wavs.shape[1]}, got {lengths.tolist()}")
    return lengths


def _valid(lengths: Tensor, total: int) -> Tensor:
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]
