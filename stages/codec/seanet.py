"""EnCodec's SEANet encoder and decoder, laid out so WavTokenizer checkpoints load without renaming.

    from stages.codec.seanet import SEANetEncoder   # used by stages.codec.model; no command of its own

The official convolutions sit three modules deep (`SConv1d.conv` -> `NormConv1d.conv` -> weight-normed
`Conv1d`), which is where state-dict keys like `encoder.model.3.conv.conv.weight_g` come from; we keep that
nesting. Weight norm is our own small module holding `weight_g`/`weight_v` itself, so the keys are the
official ones whichever weight-norm API the installed torch prefers.

The encoder also runs on a padded batch with per-item lengths: before every convolution each item is
re-padded from its own valid samples exactly as a lone forward pass would pad it (reflect, plus EnCodec's
extra right padding that completes the last window), and the LSTM only runs forward in time, so what lies
past an item's end never reaches its valid frames. Batched codes therefore equal one-by-one codes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class WeightNormed(nn.Module):
    """weight = g * v / ||v|| (norm over all dims but 0), stored as the official `weight_g`, `weight_v`."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        weight = layer.weight.detach()
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=tuple(range(1, weight.dim())), keepdim=True))
        self.weight_v = nn.Parameter(weight.clone())
        self.bias = layer.bias
        del layer.weight, layer.bias
        self._layer = [layer]  # a list hides it from the state dict: only g, v and bias are stored

    @property
    def layer(self) -> nn.Module:
        return self._layer[0]

    def weight(self) -> Tensor:
        # torch._weight_norm is the kernel both torch weight-norm APIs call: bit-identical to the official model.
        return torch._weight_norm(self.weight_v, self.weight_g, 0)


class WNConv1d(WeightNormed):
    def __init__(self, *args, **kwargs):
        super().__init__(nn.Conv1d(*args, **kwargs))

    def forward(self, x: Tensor) -> Tensor:
        c = self.layer
        return F.conv1d(x, self.weight(), self.bias, c.stride, c.padding, c.dilation, c.groups)


class WNConvTranspose1d(WeightNormed):
    def __init__(self, *args, **kwargs):
        super().__init__(nn.ConvTranspose1d(*args, **kwargs))

    def forward(self, x: Tensor) -> Tensor:
        c = self.layer
        return F.conv_transpose1d(x, self.weight(), self.bias, c.stride, c.padding, c.output_padding, c.groups,
                                  c.dilation)


class NormConv1d(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.conv = WNConv1d(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class NormConvTranspose1d(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()
        self.convtr = WNConvTranspose1d(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.convtr(x)


def reflect_pad_per_item(x: Tensor, lengths: Tensor, left: int, right: Tensor) -> tuple[Tensor, Tensor]:
    """Pad each row of `x` (B, C, T) from its first `lengths[i]` samples as EnCodec's `pad1d(reflect)` would.

    `right` holds each item's right padding. Returns the padded batch (zeros after each item's end) and the
    padded lengths. EnCodec zero-extends an input shorter than the padding before reflecting; we follow it.
    """
    padded_len = lengths + left + right
    total = int(padded_len.max())
    pos = torch.arange(total, device=x.device) - left                         # position in the unpadded signal
    max_pad = torch.maximum(torch.full_like(right, left), right)
    virtual = torch.maximum(lengths, max_pad + 1)[:, None]                   # length after EnCodec's zero extension
    src = pos[None, :].abs()                                                  # reflect at the start
    src = torch.where(src >= virtual, 2 * (virtual - 1) - src, src)           # reflect at the (virtual) end
    keep = (src < lengths[:, None]) & (pos[None, :] < (lengths + right)[:, None])
    src = src.clamp(0, x.shape[-1] - 1)
    out = torch.gather(x, 2, src[:, None, :].expand(-1, x.shape[1], -1)) * keep[:, None, :].to(x.dtype)
    return out, padded_len


class SConv1d(nn.Module):
    """Non-causal convolution with EnCodec's reflect padding and extra right padding for a full last window."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = NormConv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.padding_total = (kernel_size - 1) * dilation - (stride - 1)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        # ceil((L + padding_total - kernel) / stride + 1), in integers.
        span = lengths + self.padding_total - self.kernel_size
        return torch.div(span + self.stride - 1, self.stride, rounding_mode="floor").clamp(min=0) + 1

    def _extra_padding(self, lengths: Tensor) -> Tensor:
        n_frames = self.output_lengths(lengths)
        return (n_frames - 1) * self.stride + self.kernel_size - self.padding_total - lengths

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """`lengths` (B,): valid samples per item; None (or all equal to T) means the whole row is valid."""
        right = self.padding_total // 2
        left = self.padding_total - right
        if lengths is None or bool((lengths == x.shape[-1]).all()):
            whole = torch.tensor([x.shape[-1]])
            x = _pad1d_reflect(x, left, right + int(self._extra_padding(whole)))
        else:
            x, _ = reflect_pad_per_item(x, lengths, left, right + self._extra_padding(lengths))
        return self.conv(x)


def _pad1d_reflect(x: Tensor, left: int, right: int) -> Tensor:
    """EnCodec's pad1d: reflect padding that also works when the input is shorter than the padding."""
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode="reflect")
    return padded[..., : padded.shape[-1] - extra]


class SConvTranspose1d(nn.Module):
    """Non-causal transposed convolution that trims its fixed padding (the decoder's upsampling)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.convtr = NormConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        self.padding_total = kernel_size - stride

    def forward(self, x: Tensor) -> Tensor:
        y = self.convtr(x)
        right = self.padding_total // 2
        left = self.padding_total - right
        return y[..., left: y.shape[-1] - right]


class SLSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection, in convolutional (B, C, T) layout."""

    def __init__(self, dimension: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(2, 0, 1)
        # fp32 under bf16 autocast too: autocast leaves nn.LSTM to its inputs' dtype, and it is cheap here
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            y, _ = self.lstm(x)
        return (y + x).permute(1, 2, 0)


class SEANetResnetBlock(nn.Module):
    """ELU -> conv(k=3) -> ELU -> conv(k=1) on a compressed width, plus a 1x1 conv shortcut."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, compress: int = 2):
        super().__init__()
        hidden = dim // compress
        self.block = nn.Sequential(nn.ELU(), SConv1d(dim, hidden, kernel_size, dilation=dilation),
                                   nn.ELU(), SConv1d(hidden, dim, 1))
        self.shortcut = SConv1d(dim, dim, 1)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        h = self.block[1](self.block[0](x), lengths)
        h = self.block[3](self.block[2](h), lengths)
        return self.shortcut(x, lengths) + h


class SEANetEncoder(nn.Module):
    """Waveform (B, 1, N) -> latent (B, dimension, ceil(N / hop)), hop = prod(ratios).

    As in EnCodec, `ratios` are given in decoder order and applied reversed here (40/s: [6, 5, 5, 4] runs
    strides 4, 5, 5, 6), each stage a residual block then a strided conv with kernel 2 * stride.
    """

    def __init__(self, ratios: tuple[int, ...], n_filters: int = 32, dimension: int = 512, lstm_layers: int = 2,
                 kernel_size: int = 7, last_kernel_size: int = 7):
        super().__init__()
        self.hop_length = math.prod(ratios)
        layers: list[nn.Module] = [SConv1d(1, n_filters, kernel_size)]
        mult = 1
        for ratio in reversed(ratios):
            layers += [SEANetResnetBlock(mult * n_filters), nn.ELU(),
                       SConv1d(mult * n_filters, mult * n_filters * 2, kernel_size=2 * ratio, stride=ratio)]
            mult *= 2
        layers += [SLSTM(mult * n_filters, lstm_layers), nn.ELU(), SConv1d(mult * n_filters, dimension, last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for layer in self.model:
            if isinstance(layer, SConv1d):
                lengths = layer.output_lengths(lengths)
        return lengths

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """`lengths` (B,) marks each item's valid samples; frames past `output_lengths(lengths)` are garbage."""
        for layer in self.model:
            if isinstance(layer, (SConv1d, SEANetResnetBlock)):
                x = layer(x, lengths)
                if isinstance(layer, SConv1d):
                    lengths = None if lengths is None else layer.output_lengths(lengths)
            else:
                x = layer(x)
        return x


class SEANetDecoder(nn.Module):
    """EnCodec's mirror decoder. WavTokenizer never runs it, but its weights are part of every checkpoint."""

    def __init__(self, ratios: tuple[int, ...], n_filters: int = 32, dimension: int = 512, lstm_layers: int = 2,
                 kernel_size: int = 7, last_kernel_size: int = 7):
        super().__init__()
        mult = 2 ** len(ratios)
        layers: list[nn.Module] = [SConv1d(dimension, mult * n_filters, kernel_size),
                                   SLSTM(mult * n_filters, lstm_layers)]
        for ratio in ratios:
            layers += [nn.ELU(), SConvTranspose1d(mult * n_filters, mult * n_filters // 2, 2 * ratio, ratio),
                       SEANetResnetBlock(mult * n_filters // 2)]
            mult //= 2
        layers += [nn.ELU(), SConv1d(n_filters, 1, last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)
