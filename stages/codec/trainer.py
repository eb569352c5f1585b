"""The WavTokenizer objective and one optimizer step of it: what stage train_codec runs.

    python -m stages.train_codec AUDIO_SHARD.parquet [...] --out-checkpoint codec.ckpt --out-config codec.yaml \
        --out-metrics codec.metrics.json      # the stage (stages/train_codec.py), which loops over `train_step`

45 x log-mel L1 + 1000 x commitment loss, and (from `gan_start_step`) adversarial losses and feature
matching against the critics named in `critics` (stages/codec/discriminators.py); AdamW with warm-up +
cosine (stages/train/schedule.py, shared with the LM); random crops. On a GPU the networks run under bf16
autocast (`precision`) with TF32 allowed for what stays fp32; the quantizer, losses and STFTs stay fp32.
A checkpoint holds the CPU and, on a GPU, the CUDA random state, so a resumed run draws what the
uninterrupted one would. Keeping the single 4,096-code EMA codebook alive takes four things
here: an LSUV rescale of the encoder at step 0 (a fresh SEANet maps all audio to nearly one point), a
warm-up of `vq_warmup_steps` with the quantizer bypassed, then k-means on a sample of latents to initialise
the codebook (a randomly initialised EMA codebook collapses to a handful of codes), and restarts of codes
that fall out of use.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from stages.common.atomic import atomic_output
from stages.codec.discriminators import Discriminators, MelLoss
from stages.codec.loader import save_codec
from stages.codec.model import WavTokenizer
from stages.config.codec import CodecTrainConfig
from stages.codec.seanet import SConv1d
from stages.config import to_dict
from stages.train.engine import resolve_precision
from stages.train.schedule import warmup_cosine

log = logging.getLogger(__name__)

# Per-channel spread of the encoder's initial latents: wide enough for k-means to separate frames, small
# enough that the official 1000x commitment loss (an MSE in latent units) stays a fraction of the mel loss.
LATENT_STD = 0.1
# Keys added to CodecTrainConfig after checkpoints were written without them, with the values that reproduce
# how those checkpoints trained; precision is compared as resolved (state["precision"], fp32 before it existed).
ADDED_KEYS = {"critics": ["mpd", "mrd"], "dac_loss_coeff": 1.0}
LOG_NAMES = {"mpd": "mp", "mrd": "mrd", "dac": "dac"}   # TensorBoard names, as before the dac critic


def random_crops(clips: Sequence[np.ndarray], batch: int, samples: int, generator: torch.Generator) -> Tensor:
    """`batch` crops of `samples` from clips drawn with probability proportional to length; short clips are zero-padded."""
    known = getattr(clips, "lengths", None)  # a ClipStore knows its lengths without touching its clips
    lengths = torch.as_tensor(known if known is not None else [len(c) for c in clips], dtype=torch.float64)
    picks = torch.multinomial(lengths, batch, replacement=True, generator=generator)
    out = torch.zeros(batch, samples)
    for row, i in enumerate(picks.tolist()):
        clip = clips[i]
        start = int(torch.randint(0, max(1, len(clip) - samples + 1), (1,), generator=generator))
        piece = torch.from_numpy(np.asarray(clip[start: start + samples], dtype=np.float32))
        out[row, : len(piece)] = piece
    return out


class CodecTrainer:
    """The generator, the critics, their optimisers and the step counter, with save/resume."""

    def __init__(self, config: CodecTrainConfig, device: torch.device):
        self.config, self.device = config, device
        self.precision = resolve_precision(config.precision, device, "codec.train")
        if device.type == "cuda":
            # TF32 tensor cores for the fp32 matmuls and convolutions that remain; encoding for extraction
            # turns them off again (model._full_precision), so codes never depend on this
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.seed)
        self.model = WavTokenizer(config.arch()).to(device)
        self.model.quantizer.codebook.threshold_ema_dead_code = (
            config.dead_code_usage * self.frames_per_step / config.codebook_size)
        self.critics = Discriminators(len(self.model.arch.bandwidths), config.critic_width,
                                      config.critics).to(device)
        self.mel_loss = MelLoss(self.model.sample_rate).to(device)
        self.schedule = warmup_cosine(config.warmup_steps, config.steps, min_ratio=0.0)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate)
        self.opt_d = torch.optim.AdamW(self.critics.parameters(), lr=config.learning_rate)
        self.data_rng = torch.Generator().manual_seed(config.seed)
        self.step = 0

    def state(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "critics": self.critics.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "data_rng": self.data_rng.get_state(), **rng_states(self.device), "precision": self.precision,
                "config": json.dumps(to_dict(self.config), sort_keys=True)}

    def save(self, path: Path) -> None:
        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    def resume(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        saved = {**ADDED_KEYS, **json.loads(state["config"])}
        current = to_dict(self.config)
        changed = sorted(k for k in (set(saved) | set(current)) - {"precision"} if saved.get(k) != current.get(k))
        if changed:
            raise ValueError(f"{path} was written with another codec training config ({', '.join(changed)} "
                             "differ); use a fresh output folder")
        trained_in = state.get("precision", "fp32")
        if trained_in != self.precision:
            raise ValueError(f"{path} was trained in {trained_in}, but this run would train in {self.precision} "
                             f"(codec.train.precision: {self.config.precision} on {self.device}); set "
                             f"codec.train.precision: {trained_in} to continue it, or use a fresh output folder")
        self.model.load_state_dict(state["model"])
        self.critics.load_state_dict(state["critics"])
        for name in ("opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        self.data_rng.set_state(state["data_rng"].cpu())
        restore_rng_states(state, self.device, path)
        self.step = state["step"]

    def export(self, checkpoint: Path, codec_yaml: Path) -> None:
        """The generator as an official-layout checkpoint + YAML; the critics only once they have trained."""
        c = self.config
        critics = self.critics.state_dict() if self.step > c.gan_start_step else None
        save_codec(self.model, checkpoint, codec_yaml, extra_state=critics,
                   global_step=self.step, training={"initial_learning_rate": c.learning_rate,
                                                    "mel_loss_coeff": c.mel_loss_coeff,
                                                    "mrd_loss_coeff": c.mrd_loss_coeff})

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when training in bf16; a no-op in fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def loss_weights(self) -> dict[str, float]:
        c = self.config
        return {"mpd": 1.0, "mrd": c.mrd_loss_coeff, "dac": c.dac_loss_coeff}

    @property
    def frames_per_step(self) -> int:
        return self.config.batch_size * self.segment_frames

    @property
    def segment_frames(self) -> int:
        return max(1, round(self.config.segment_seconds * self.model.frame_rate))

    def crops(self, clips: Sequence[np.ndarray]) -> Tensor:
        samples = self.segment_frames * self.model.hop_length
        return random_crops(clips, self.config.batch_size, samples, self.data_rng).to(self.device)

    @torch.no_grad()
    def init_codebook(self, clips: Sequence[np.ndarray]) -> None:
        """k-means on latents of random crops: the codebook starts where the encoder's outputs are."""
        frames = []
        while sum(len(f) for f in frames) < self.config.kmeans_frames:
            frames.append(self.model.latents(self.crops(clips)).transpose(1, 2).reshape(-1, self.model.arch.seanet_dimension))
        samples = torch.cat(frames)[: self.config.kmeans_frames]
        self.model.quantizer.codebook.init_from_kmeans(samples, self.frames_per_step / len(samples), self.data_rng)

    def train_step(self, clips: Sequence[np.ndarray]) -> dict[str, float]:
        c = self.config
        self.model.train()
        lr = c.learning_rate * self.schedule(self.step)
        for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
            group["lr"] = lr
        if self.step == 0:
            lsuv_init(self.model, self.crops(clips)[:4])  # 4 crops give stable statistics at a quarter of the cost
        if self.step >= c.vq_warmup_steps and not self.model.quantizer.codebook.is_initialised:
            self.init_codebook(clips)
        audio = self.crops(clips)
        cond = torch.randint(0, len(self.model.arch.bandwidths), (1,), device=self.device)
        with self.autocast():
            latents = self.model.latents(audio)
        codebook = self.model.quantizer.codebook
        if codebook.is_initialised:
            # distances, EMA statistics and restarts in fp32: bf16 would move codes across near ties
            features, codes, commit = self.model.quantizer(latents.float())
            logs = {"codebook/codes_in_batch": float(codes.unique().numel()), "codebook/restarted": codebook.last_restarts}
        else:
            features, commit, logs = latents.float(), latents.new_zeros((), dtype=torch.float32), {}
        with self.autocast():
            audio_hat = self.model.head(self.model.backbone(features, cond))  # fp32 audio: the head ends in fp32
        use_gan = self.step >= c.gan_start_step
        weights = self.loss_weights()
        if use_gan:
            with self.autocast():
                loss_d = sum(weights[name] * critic.critic_loss(audio, audio_hat.detach(), cond)
                             for name, critic in self.critics.critics())
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            logs["critic/total"] = loss_d.item()
        mel = self.mel_loss(audio_hat, audio)
        loss_g = c.mel_loss_coeff * mel + c.commit_loss_coeff * commit
        if use_gan:
            for name, critic in self.critics.critics():
                with self.autocast():
                    gan, fm = critic.generator_loss(audio, audio_hat, cond)
                loss_g = loss_g + weights[name] * (gan + fm)
                logs[f"generator/gan_{LOG_NAMES[name]}"], logs[f"generator/fm_{LOG_NAMES[name]}"] = gan.item(), fm.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        self.opt_g.step()
        self.step += 1
        logs.update({"generator/total": loss_g.item(), "generator/mel_l1": mel.item(), "generator/commit": commit.item(),
                     "grad_norm": grad_norm.item(), "lr": lr})
        return logs

    @torch.no_grad()
    def evaluate(self, clips: Sequence[np.ndarray]) -> dict[str, float]:
        """Mel L1 of resynthesis and codebook use on held-out clips, through the inference path."""
        self.model.eval()
        mels, used = [], set()
        for clip in clips[: self.config.valid_clips]:
            wav = torch.from_numpy(np.asarray(clip, dtype=np.float32))[None].to(self.device)
            codes, _ = self.model.encode(wav)
            audio_hat = self.model.decode(codes)[:, : wav.shape[1]]
            mels.append(float(self.mel_loss(audio_hat, wav[:, : audio_hat.shape[1]])))
            used.update(codes.flatten().tolist())
        return {"valid/mel_l1": float(np.mean(mels)) if mels else float("nan"), "valid/codes_used": float(len(used))}


def rng_states(device: torch.device) -> dict:
    """The global random states a step draws from: the CPU's, and on a GPU that device's (dropout, restarts)."""
    states = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda_rng"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(state: dict, device: torch.device, path: Path) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
    if device.type != "cuda":
        return
    if "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    else:
        log.warning("%s holds no CUDA random state (written on the CPU, or before it was saved): from here on "
                    "dropout and code restarts draw differently than an uninterrupted run", path)


@torch.no_grad()
def lsuv_init(model: WavTokenizer, audio: Tensor) -> None:
    """Rescale each encoder conv so its outputs on `audio` have zero mean and unit spread per channel.

    A freshly initialised SEANet (weight norm, ELUs, LSTM) maps every input to within ~1e-3 of one point;
    its latents then carry almost no signal, training drifts them by about their own spread each step, and
    k-means on them yields a codebook that collapses at once. Layer-sequential unit-variance (LSUV) init
    fixes the scale before training; the last conv is scaled to LATENT_STD instead. Only weight_g and bias
    change, so the architecture stays the official one.
    """
    convs = [m for m in model.encoder.modules() if isinstance(m, SConv1d)]
    for i, conv in enumerate(convs):
        captured = []
        handle = conv.register_forward_hook(lambda _m, _i, out: captured.append(out))
        model.encoder(audio.unsqueeze(1))
        handle.remove()
        out = captured[0].transpose(0, 1).reshape(captured[0].shape[1], -1)
        target = LATENT_STD if i == len(convs) - 1 else 1.0
        std = out.std(1).clamp(min=1e-8) / target
        inner = conv.conv.conv
        inner.weight_g.div_(std.view(-1, 1, 1))
        inner.bias.sub_(out.mean(1)).div_(std)
