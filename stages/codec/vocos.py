"""WavTokenizer's decoder: Vocos backbone (attention pos_net, AdaLayerNorm, ConvNeXt) and ISTFT head.

    from stages.codec.vocos import VocosBackbone, ISTFTHead   # used by stages.codec.model

Module names give the official state-dict keys (`backbone.pos_net.2.q.weight`, `backbone.convnext.0.gamma`,
`head.out.weight`, `head.istft.window`, ...).

Batched decoding of codes of different lengths takes a frame mask (B, 1, T). The decoder has three places
where frames talk to each other — zero-padded convolutions, GroupNorm statistics over time and the
attention block — and the ISTFT's overlap-add; with a mask each of them sees exactly the frames a
one-by-one decode would see, so padding does not change the audio.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

Mask = Tensor | None  # (B, 1, T) float, 1 on valid frames


def _zero_pad(x: Tensor, mask: Mask) -> Tensor:
    """Zero the frames past each item's end, which is what a lone item's zero padding shows a conv."""
    return x if mask is None else x * mask


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)  # written out as the official code does; F.silu rounds differently


class GroupNorm(nn.GroupNorm):
    """GroupNorm(32 groups, eps 1e-6) whose statistics cover only the valid frames when given a mask."""

    def __init__(self, channels: int):
        super().__init__(num_groups=32, num_channels=channels, eps=1e-6, affine=True)

    def forward(self, x: Tensor, mask: Mask = None) -> Tensor:
        if mask is None:
            return super().forward(x)
        b, c, t = x.shape
        g = x.view(b, self.num_groups, c // self.num_groups, t)
        m = mask.view(b, 1, 1, t)
        count = m.sum(dim=(2, 3), keepdim=True) * (c // self.num_groups)
        mean = (g * m).sum(dim=(2, 3), keepdim=True) / count
        var = (((g - mean) * m) ** 2).sum(dim=(2, 3), keepdim=True) / count
        g = (g - mean) / torch.sqrt(var + self.eps)
        return g.view(b, c, t) * self.weight[:, None] + self.bias[:, None]


class ResnetBlock(nn.Module):
    """GroupNorm -> swish -> conv3 -> GroupNorm -> swish -> dropout -> conv3, plus identity."""

    def __init__(self, channels: int, dropout: float = 0.1):
        super().__init__()
        self.norm1 = GroupNorm(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = GroupNorm(channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: Tensor, mask: Mask = None) -> Tensor:
        h = self.conv1(_zero_pad(_swish(self.norm1(x, mask)), mask))
        h = self.conv2(_zero_pad(self.dropout(_swish(self.norm2(h, mask))), mask))
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all frames, with 1x1-conv projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = GroupNorm(channels)
        self.q = nn.Conv1d(channels, channels, kernel_size=1)
        self.k = nn.Conv1d(channels, channels, kernel_size=1)
        self.v = nn.Conv1d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor, mask: Mask = None) -> Tensor:
        h = self.norm(x, mask)
        q, k, v = self.q(h), self.k(h), self.v(h)
        scores = torch.bmm(q.transpose(1, 2), k) * (q.shape[1] ** -0.5)       # (B, T_query, T_key)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, float("-inf"))
        weights = F.softmax(scores, dim=2)
        h = torch.bmm(v, weights.transpose(1, 2))                               # (B, C, T_query)
        return x + self.proj_out(h)


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine weights, then a scale and shift looked up by bandwidth id."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps, self.dim = eps, dim
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: Tensor, cond_id: Tensor) -> Tensor:
        return F.layer_norm(x, (self.dim,), eps=self.eps) * self.scale(cond_id) + self.shift(cond_id)


def _norm(module: nn.Module, x: Tensor, cond_id: Tensor) -> Tensor:
    return module(x, cond_id) if isinstance(module, AdaLayerNorm) else module(x)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init_value: float,
                 adanorm_num_embeddings: int | None):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm_num_embeddings else nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x: Tensor, cond_id: Tensor, mask: Mask = None) -> Tensor:
        h = self.dwconv(_zero_pad(x, mask)).transpose(1, 2)
        h = self.pwconv2(self.act(self.pwconv1(_norm(self.norm, h, cond_id))))
        return x + (self.gamma * h).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Codebook features (B, C_in, T) -> hidden frames (B, T, dim)."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int,
                 layer_scale_init_value: float | None = None, adanorm_num_embeddings: int | None = 4):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if adanorm_num_embeddings else nn.LayerNorm(dim, eps=1e-6)
        scale = layer_scale_init_value or 1 / num_layers
        self.convnext = nn.ModuleList([ConvNeXtBlock(dim, intermediate_dim, scale, adanorm_num_embeddings)
                                       for _ in range(num_layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.apply(_init_weights)
        # Built after the init pass, as in the official code, so these keep torch's default init.
        self.pos_net = nn.Sequential(ResnetBlock(dim), ResnetBlock(dim), AttnBlock(dim),
                                     ResnetBlock(dim), ResnetBlock(dim), GroupNorm(dim))

    def forward(self, x: Tensor, cond_id: Tensor, mask: Mask = None) -> Tensor:
        x = self.embed(_zero_pad(x, mask))
        for block in self.pos_net:
            x = block(x, mask)
        x = _norm(self.norm, x.transpose(1, 2), cond_id).transpose(1, 2)
        for block in self.convnext:
            x = block(x, cond_id, mask)
        return self.final_layer_norm(x.transpose(1, 2))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv1d, nn.Linear)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.constant_(m.bias, 0)


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: T frames give exactly T * hop samples.

    torch.istft only offers centre padding (its NOLA check fails at trimmed edges), so the overlap-add
    is done with `fold` and divided by the summed squared window.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft))

    def _overlap_add(self, frames: Tensor, n_frames: int) -> Tensor:
        size = (n_frames - 1) * self.hop_length + self.n_fft
        return F.fold(frames, output_size=(1, size), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))[:, 0, 0]

    def forward(self, spec: Tensor, mask: Mask = None) -> Tensor:
        """Complex spectrogram (B, n_fft/2+1, T) -> audio (B, T * hop); zeros past each item's valid frames."""
        pad = (self.n_fft - self.hop_length) // 2
        n_frames = spec.shape[-1]
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        if mask is not None:
            frames = frames * mask
        y = self._overlap_add(frames, n_frames)[:, pad:-pad]
        window_sq = self.window.square()[None, :, None]
        if mask is None:
            envelope = self._overlap_add(window_sq.expand(1, -1, n_frames), n_frames)[:, pad:-pad]
            return y / envelope
        envelope = self._overlap_add(window_sq * mask, n_frames)[:, pad:-pad]
        valid = torch.arange(y.shape[-1], device=y.device)[None] < mask.sum(dim=(1, 2))[:, None] * self.hop_length
        return torch.where(valid, y / envelope.clamp(min=1e-11), torch.zeros_like(y))


class ISTFTHead(nn.Module):
    """Hidden frames (B, T, dim) -> log-magnitude and phase per bin -> audio via ISTFT."""

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft, hop_length)

    def forward(self, x: Tensor, mask: Mask = None) -> Tensor:
        # fp32 from here under bf16 autocast too: there is no bf16 complex type for the inverse FFT
        mag, phase = self.out(x).float().transpose(1, 2).chunk(2, dim=1)
        mag = torch.clip(torch.exp(mag), max=1e2)  # the official safeguard against huge magnitudes
        return self.istft(mag * (torch.cos(phase) + 1j * torch.sin(phase)), mask)
