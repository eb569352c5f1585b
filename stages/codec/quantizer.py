"""WavTokenizer's single-codebook vector quantizer: EMA codebook, k-means init, dead-code restarts.

    from stages.codec.quantizer import ResidualVectorQuantizer   # used by stages.codec.model

Module and buffer names follow the official code (`quantizer.vq.layers.0._codebook.{inited, cluster_size,
embed, embed_avg}`). The codebook is a set of buffers trained by exponential moving averages of the
encoder outputs assigned to each code, not by gradients; the encoder gets a straight-through gradient
and a commitment loss.

One deliberate difference: the official code runs k-means on whatever audio it sees first when the
codebook is uninitialised, even at inference. Here an uninitialised codebook refuses to encode; training
initialises it explicitly with `init_from_kmeans` on a warm-up sample of encoder outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def nearest_code(x: Tensor, embed: Tensor) -> Tensor:
    """Index of the closest row of `embed` (K, D) for each row of `x` (N, D).

    The expression and its evaluation order are the official ones, so ties and near-ties resolve the
    same way and codes match bit for bit.
    """
    embed_t = embed.t()
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed_t + embed_t.pow(2).sum(0, keepdim=True))
    return dist.max(dim=-1).indices


def _nearest_chunked(x: Tensor, embed: Tensor, chunk: int = 8192) -> Tensor:
    return torch.cat([nearest_code(part, embed) for part in x.split(chunk)]) if len(x) else x.new_zeros(0, dtype=torch.long)


def kmeans(samples: Tensor, num_clusters: int, num_iters: int, generator: torch.Generator | None = None
           ) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from randomly drawn samples; empty clusters keep their previous centre."""
    n, dim = samples.shape
    if n >= num_clusters:
        idx = torch.randperm(n, generator=generator, device="cpu")[:num_clusters]
    else:
        idx = torch.randint(0, n, (num_clusters,), generator=generator, device="cpu")
    means = samples[idx.to(samples.device)].clone()
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = _nearest_chunked(samples, means)
        bins = torch.bincount(buckets, minlength=num_clusters)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        empty = bins == 0
        means = torch.where(empty[:, None], means, sums / bins.clamp(min=1)[:, None].to(samples.dtype))
    return means, bins


class EuclideanCodebook(nn.Module):
    def __init__(self, dim: int, codebook_size: int, kmeans_iters: int = 200, decay: float = 0.99,
                 epsilon: float = 1e-5, threshold_ema_dead_code: float = 2.0):
        super().__init__()
        self.codebook_size, self.kmeans_iters = codebook_size, kmeans_iters
        self.decay, self.epsilon, self.threshold_ema_dead_code = decay, epsilon, threshold_ema_dead_code
        self.last_restarts = 0  # dead codes restarted by the latest training step, for logging
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.zeros(codebook_size, dim))
        self.register_buffer("embed_avg", torch.zeros(codebook_size, dim))

    @property
    def is_initialised(self) -> bool:
        return bool(self.inited.item() != 0)

    @torch.no_grad()
    def init_from_kmeans(self, samples: Tensor, usage_scale: float = 1.0, generator: torch.Generator | None = None
                         ) -> None:
        """Set the codebook to k-means centres of `samples` (N, D) and start the EMA statistics from them.

        `usage_scale` converts cluster counts into per-step usage (frames per step / N), the unit the EMA
        keeps. Unlike the official init (embed_avg = embed), embed_avg = embed * usage, so the first EMA
        step does not shrink every code towards zero.
        """
        embed, bins = kmeans(samples.float(), self.codebook_size, self.kmeans_iters, generator)
        # An empty cluster keeps its seed sample; the usage floor keeps the EMA from turning it into a zero
        # vector (0 / ~0) that would sit at the latents' centre and swallow every frame. Unused, it decays and
        # restarts like any dead code.
        floor = 2 * self.threshold_ema_dead_code if self.threshold_ema_dead_code > 0 else usage_scale
        usage = (bins.to(self.cluster_size.dtype) * usage_scale).clamp(min=floor)
        self.embed.copy_(embed)
        self.embed_avg.copy_(embed * usage[:, None])
        self.cluster_size.copy_(usage)
        self.inited.fill_(1.0)

    def encode(self, x: Tensor) -> Tensor:
        """(..., D) -> code indices (...)."""
        if not self.is_initialised:
            raise RuntimeError("the codebook is uninitialised (inited == 0): train it or load a trained checkpoint")
        return nearest_code(x.reshape(-1, x.shape[-1]), self.embed).view(*x.shape[:-1])

    def decode(self, codes: Tensor) -> Tensor:
        return F.embedding(codes, self.embed)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        codes = self.encode(x)
        quantized = self.decode(codes)
        if self.training:
            self._ema_update(x.reshape(-1, x.shape[-1]).detach(), codes.reshape(-1))
        return quantized, codes

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, codes: Tensor) -> None:
        self.last_restarts = self.restart_dead_codes(flat)
        onehot = F.one_hot(codes, self.codebook_size).to(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_((flat.t() @ onehot).t(), alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    @torch.no_grad()
    def restart_dead_codes(self, flat: Tensor) -> int:
        """Move codes whose EMA usage fell below the threshold onto random encoder outputs of this batch."""
        dead = self.cluster_size < self.threshold_ema_dead_code
        n_dead = int(dead.sum())
        if n_dead == 0 or self.threshold_ema_dead_code <= 0:
            return 0
        picks = torch.randint(0, flat.shape[0], (n_dead,), device=flat.device)
        # Restart the EMA statistics too (the official code moves only `embed`, which the same step's EMA
        # update then overwrites). Twice the threshold gives the code ~70 steps to attract frames.
        grace = 2 * self.threshold_ema_dead_code
        self.embed[dead] = flat[picks]
        self.embed_avg[dead] = flat[picks] * grace
        self.cluster_size[dead] = grace
        return n_dead


class VectorQuantization(nn.Module):
    """One codebook on (B, D, T) latents; straight-through gradient and a commitment loss when training."""

    def __init__(self, dim: int, codebook_size: int, kmeans_iters: int, decay: float = 0.99,
                 threshold_ema_dead_code: float = 2.0, commitment_weight: float = 1.0):
        super().__init__()
        self.commitment_weight = commitment_weight
        self._codebook = EuclideanCodebook(dim, codebook_size, kmeans_iters, decay,
                                           threshold_ema_dead_code=threshold_ema_dead_code)

    @property
    def codebook(self) -> Tensor:
        return self._codebook.embed

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = x.transpose(1, 2)
        quantized, codes = self._codebook(x)
        loss = x.new_zeros(())
        if self.training:
            loss = F.mse_loss(quantized.detach(), x) * self.commitment_weight
            quantized = x + (quantized - x).detach()
        return quantized.transpose(1, 2), codes, loss


class LanguageVectorQuantization(nn.Module):
    """The official container (`vq.layers.N`). WavTokenizer encodes with the first codebook only."""

    def __init__(self, num_quantizers: int, **kwargs):
        super().__init__()
        self.layers = nn.ModuleList([VectorQuantization(**kwargs) for _ in range(num_quantizers)])


class ResidualVectorQuantizer(nn.Module):
    def __init__(self, dimension: int, n_q: int, bins: int, kmeans_iters: int, decay: float = 0.99,
                 threshold_ema_dead_code: float = 2.0):
        super().__init__()
        self.bins = bins
        self.vq = LanguageVectorQuantization(num_quantizers=n_q, dim=dimension, codebook_size=bins,
                                             kmeans_iters=kmeans_iters, decay=decay,
                                             threshold_ema_dead_code=threshold_ema_dead_code)

    @property
    def codebook(self) -> EuclideanCodebook:
        return self.vq.layers[0]._codebook

    def forward(self, latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, D, T) -> quantized (B, D, T), codes (B, T), commitment loss (scalar)."""
        return self.vq.layers[0](latents)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, T) -> codebook rows (B, D, T)."""
        return self.codebook.decode(codes).transpose(1, 2)
