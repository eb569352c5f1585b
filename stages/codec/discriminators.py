"""WavTokenizer's GAN critics and their losses, and the mel L1 reconstruction loss.

    from stages.codec.discriminators import Discriminators   # used by stages.codec.trainer
    critics = Discriminators(num_embeddings=4, critics=("mpd", "mrd", "dac"))
    for name, critic in critics.critics():
        critic.critic_loss(real, fake, cond)                  # the critic's objective
        gan, fm = critic.generator_loss(real, fake, cond)     # the generator's, against this critic

Three critics, as the official recipe has them: `mpd` (HiFi-GAN multi-period) and `mrd` (UnivNet
multi-resolution magnitude), both conditioned on the bandwidth id through a learned embedding and trained
with hinge losses averaged over their sub-critics; and `dac`, DAC's discriminator as WavTokenizer copied it
(five period critics and a complex multi-band STFT critic at three window sizes, on DC-free peak-normalised
audio), with least-squares losses summed over its sub-critics. Names follow the official training module
(`multiperioddisc.discriminators.N.*`, `multiresddisc.discriminators.N.*`, `dac.discriminators.N.*`), so
our checkpoints carry them under the keys official ones use. The official code leaves the dac critic out
of its critics' optimiser, so it never learns there; ours trains all three.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn
from torch.nn import functional as F

from stages.codec.seanet import WeightNormed

LRELU_SLOPE = 0.1


class WNConv2d(WeightNormed):
    def __init__(self, *args, **kwargs):
        super().__init__(nn.Conv2d(*args, **kwargs))

    def forward(self, x: Tensor) -> Tensor:
        c = self.layer
        return F.conv2d(x, self.weight(), self.bias, c.stride, c.padding, c.dilation, c.groups)


def _conditioned_output(x: Tensor, conv_post: nn.Module, emb: nn.Embedding, cond_id: Tensor) -> tuple[Tensor, Tensor]:
    """conv_post(x) plus a projection of the last features on the bandwidth embedding (a projection critic)."""
    h = (emb(cond_id).view(1, -1, 1, 1) * x).sum(dim=1, keepdim=True)
    out = conv_post(x)
    return out, torch.flatten(out + h, 1, -1)


class DiscriminatorP(nn.Module):
    """HiFi-GAN period critic: the waveform folded into (T / period, period) and scanned by 2-D convs."""

    def __init__(self, period: int, num_embeddings: int, width: float = 1.0, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        widths = [1] + [max(4, round(w * width)) for w in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList([
            WNConv2d(widths[i], widths[i + 1], (kernel_size, 1), (stride if i < 4 else 1, 1),
                     padding=(kernel_size // 2, 0)) for i in range(5)])
        self.emb = nn.Embedding(num_embeddings, widths[-1])
        nn.init.zeros_(self.emb.weight)
        self.conv_post = WNConv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0))

    def forward(self, x: Tensor, cond_id: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = x.unsqueeze(1)
        if x.shape[-1] % self.period:
            x = F.pad(x, (0, self.period - x.shape[-1] % self.period), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)
        fmap = []
        for i, conv in enumerate(self.convs):
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            if i > 0:
                fmap.append(x)
        out, score = _conditioned_output(x, self.conv_post, self.emb, cond_id)
        return score, fmap + [out]


class DiscriminatorR(nn.Module):
    """UnivNet resolution critic: 2-D convs over a linear magnitude spectrogram."""

    def __init__(self, resolution: tuple[int, int, int], num_embeddings: int, channels: int = 64):
        super().__init__()
        self.resolution = resolution
        shapes = [((7, 5), (2, 2), (3, 2)), ((5, 3), (2, 1), (2, 1)), ((5, 3), (2, 2), (2, 1)),
                  ((3, 3), (2, 1), (1, 1)), ((3, 3), (2, 2), (1, 1))]
        self.convs = nn.ModuleList([WNConv2d(1 if i == 0 else channels, channels, k, s, padding=p)
                                    for i, (k, s, p) in enumerate(shapes)])
        self.emb = nn.Embedding(num_embeddings, channels)
        nn.init.zeros_(self.emb.weight)
        self.conv_post = WNConv2d(channels, 1, (3, 3), padding=(1, 1))

    def forward(self, x: Tensor, cond_id: Tensor) -> tuple[Tensor, list[Tensor]]:
        n_fft, hop, win = self.resolution
        # A rectangular window, as in the official critic.
        window = torch.ones(win, device=x.device, dtype=x.dtype)
        x = torch.stft(x, n_fft, hop, win, window=window, center=True, return_complex=True).abs().unsqueeze(1)
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        out, score = _conditioned_output(x, self.conv_post, self.emb, cond_id)
        return score, fmap + [out]


class MultiCritic(nn.Module):
    """Conditioned sub-critics trained with hinge losses, each loss averaged over them (mpd, mrd)."""

    def __init__(self, critics: list[nn.Module]):
        super().__init__()
        self.discriminators = nn.ModuleList(critics)

    def forward(self, y: Tensor, cond_id: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        scores, fmaps = zip(*(d(y, cond_id) for d in self.discriminators))
        return list(scores), list(fmaps)

    def critic_loss(self, real: Tensor, fake: Tensor, cond_id: Tensor) -> Tensor:
        return discriminator_hinge(self(real, cond_id)[0], self(fake, cond_id)[0])

    def generator_loss(self, real: Tensor, fake: Tensor, cond_id: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            _, real_fmaps = self(real, cond_id)
        scores, fmaps = self(fake, cond_id)
        return generator_hinge(scores), feature_matching(real_fmaps, fmaps)


def _conv_lrelu(*args, **kwargs) -> nn.Sequential:
    """A weight-normed Conv2d and a leaky ReLU, nested as DAC nests them (keys `N.0.weight_g`)."""
    return nn.Sequential(WNConv2d(*args, **kwargs), nn.LeakyReLU(LRELU_SLOPE))


class DACPeriod(nn.Module):
    """DAC's period critic: like HiFi-GAN's, but unconditioned, with every conv's output a feature."""

    def __init__(self, period: int, width: float = 1.0):
        super().__init__()
        self.period = period
        widths = [1] + [max(4, round(w * width)) for w in (32, 128, 512, 1024, 1024)]
        self.convs = nn.ModuleList([_conv_lrelu(widths[i], widths[i + 1], (5, 1), (3, 1) if i < 4 else 1,
                                                padding=(2, 0)) for i in range(5)])
        self.conv_post = WNConv2d(widths[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: Tensor) -> list[Tensor]:
        # the official pads a whole period when the length is already a multiple
        x = F.pad(x.unsqueeze(1), (0, self.period - x.shape[-1] % self.period), mode="reflect")
        x = x.view(x.shape[0], 1, -1, self.period)
        fmap = []
        for conv in self.convs:
            x = conv(x)
            fmap.append(x)
        return fmap + [self.conv_post(x)]


DAC_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


class DACBands(nn.Module):
    """DAC's complex multi-band STFT critic: real and imaginary parts, split into five bands, one conv stack each."""

    def __init__(self, window_length: int, width: float = 1.0, bands: tuple[tuple[float, float], ...] = DAC_BANDS):
        super().__init__()
        self.n_fft = window_length
        bins = window_length // 2 + 1
        self.bands = [(int(lo * bins), int(hi * bins)) for lo, hi in bands]
        ch = max(4, round(32 * width))

        def stack() -> nn.ModuleList:
            return nn.ModuleList([_conv_lrelu(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                                  *(_conv_lrelu(ch, ch, (3, 9), (1, 2), padding=(1, 4)) for _ in range(3)),
                                  _conv_lrelu(ch, ch, (3, 3), (1, 1), padding=(1, 1))])

        self.band_convs = nn.ModuleList([stack() for _ in self.bands])
        self.conv_post = WNConv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        # WavTokenizer's copy: hop n_fft / 4 and a rectangular window (torch.stft's defaults), centred
        window = torch.ones(self.n_fft, device=x.device)
        spec = torch.view_as_real(torch.stft(x.float(), self.n_fft, window=window, return_complex=True))
        spec = spec.permute(0, 3, 2, 1)  # (B, real/imaginary, frames, bins)
        fmap, outs = [], []
        for (lo, hi), stack in zip(self.bands, self.band_convs):
            band = spec[..., lo:hi]
            for layer in stack:
                band = layer(band)
                fmap.append(band)
            outs.append(band)
        return fmap + [self.conv_post(torch.cat(outs, dim=-1))]


class DACCritic(nn.Module):
    """DAC's discriminator as WavTokenizer trains with it: least-squares losses summed over its sub-critics."""

    def __init__(self, width: float = 1.0, periods: tuple[int, ...] = (2, 3, 5, 7, 11),
                 fft_sizes: tuple[int, ...] = (2048, 1024, 512)):
        super().__init__()
        self.discriminators = nn.ModuleList([*(DACPeriod(p, width) for p in periods),
                                             *(DACBands(n, width) for n in fft_sizes)])

    def forward(self, y: Tensor) -> list[list[Tensor]]:
        """Every sub-critic's features, its score last, of DC-free audio peak-normalised to 0.8."""
        y = y - y.mean(dim=-1, keepdim=True)
        y = 0.8 * y / (y.abs().amax(dim=-1, keepdim=True) + 1e-9)
        return [d(y) for d in self.discriminators]

    def critic_loss(self, real: Tensor, fake: Tensor, cond_id: Tensor | None = None) -> Tensor:
        return sum((f[-1].float().square().mean() + (1 - r[-1].float()).square().mean())
                   for r, f in zip(self(real), self(fake)))

    def generator_loss(self, real: Tensor, fake: Tensor, cond_id: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            real_maps = self(real)
        fake_maps = self(fake)
        gan = sum((1 - f[-1].float()).square().mean() for f in fake_maps)
        fm = sum(F.l1_loss(f.float(), r.float()) for fs, rs in zip(fake_maps, real_maps) for f, r in zip(fs[:-1], rs[:-1]))
        return gan, fm


CRITICS = {"mpd": "multiperioddisc", "mrd": "multiresddisc", "dac": "dac"}   # config name -> official attribute


class Discriminators(nn.Module):
    """The critics named, under their official attribute names; `width` < 1 scales every channel count down."""

    def __init__(self, num_embeddings: int, width: float = 1.0, critics: tuple[str, ...] = ("mpd", "mrd"),
                 periods: tuple[int, ...] = (2, 3, 5, 7, 11),
                 resolutions: tuple[tuple[int, int, int], ...] = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512))):
        super().__init__()
        unknown = set(critics) - set(CRITICS)
        if unknown:
            raise ValueError(f"unknown critic(s) {sorted(unknown)}; known: {list(CRITICS)}")
        self.names = tuple(critics)
        if "mpd" in critics:
            self.multiperioddisc = MultiCritic([DiscriminatorP(p, num_embeddings, width) for p in periods])
        if "mrd" in critics:
            self.multiresddisc = MultiCritic([DiscriminatorR(r, num_embeddings, max(4, round(64 * width)))
                                              for r in resolutions])
        if "dac" in critics:
            self.dac = DACCritic(width)

    def critics(self) -> list[tuple[str, nn.Module]]:
        """(config name, critic) in the order configured; each has critic_loss and generator_loss."""
        return [(name, getattr(self, CRITICS[name])) for name in self.names]


def discriminator_hinge(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Mean over critics of E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))], in fp32."""
    return sum(F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for r, f in zip(real, fake)) / len(real)


def generator_hinge(fake: list[Tensor]) -> Tensor:
    return sum(F.relu(1 - f.float()).mean() for f in fake) / len(fake)


def feature_matching(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 between critic features of real and generated audio, summed over layers, averaged over critics."""
    return sum(sum((r.detach().float() - f.float()).abs().mean() for r, f in zip(rs, fs))
               for rs, fs in zip(real, fake)) / len(real)


class MelLoss(nn.Module):
    """L1 between log-mel spectrograms (n_fft 1024, hop 256, 100 bands), the official reconstruction loss."""

    def __init__(self, sample_rate: int):
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=1024, hop_length=256,
                                                        n_mels=100, center=True, power=1)

    def log_mel(self, audio: Tensor) -> Tensor:
        return torch.log(torch.clip(self.mel(audio), min=1e-7))

    def forward(self, audio_hat: Tensor, audio: Tensor) -> Tensor:
        # in fp32 under autocast too: a bf16 mel filterbank matmul would blur the loss that drives the codec
        with torch.autocast(audio.device.type, enabled=False):
            return F.l1_loss(self.log_mel(audio_hat.float()), self.log_mel(audio.float()))
