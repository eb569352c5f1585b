"""Train a WavTokenizer codec on the corpus's audio shards, for when no official weights are at hand.

    python -m stages.codec.train OUT_DIR AUDIO_SHARD.parquet [...] [--config codec_train.yaml | --config-json '{...}']
        [--threads N] [--device cpu|cuda]

The WavTokenizer objective: 45 x log-mel L1 + 1000 x commitment loss, and (from `gan_start_step`) hinge
losses and feature matching against a multi-period and a multi-resolution critic; AdamW with a cosine
schedule; random crops. Keeping the single 4,096-code EMA codebook alive takes four things here: an
LSUV rescale of the encoder at step 0 (a fresh SEANet maps all audio to nearly one point), a warm-up of
`vq_warmup_steps` with the quantizer bypassed, then k-means on a sample of latents to initialise the
codebook (a randomly initialised EMA codebook collapses to a handful of codes), and restarts of codes
that fall out of use.

OUT_DIR receives `codec.ckpt` + `codec.yaml` in the official layout (our loader and the official code
load them), `state.pt` (everything needed to resume: weights, optimisers, step, RNG states),
`codec.metrics.json` and TensorBoard logs. Rerunning the command resumes from `state.pt`.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch
import yaml
from torch import Tensor

from stages.atomic import atomic_output
from stages.codec.discriminators import (Discriminators, MelLoss, discriminator_hinge, feature_matching,
                                         generator_hinge)
from stages.codec.loader import save_codec
from stages.codec.model import WavTokenizer
from stages.codec_config import CodecTrainConfig
from stages.codec.seanet import SConv1d
from stages.config import from_dict, to_dict
from stages.tables import AUDIO_SHARD, read_table

# Per-channel spread of the encoder's initial latents: wide enough for k-means to separate frames, small
# enough that the official 1000x commitment loss (an MSE in latent units) stays a fraction of the mel loss.
LATENT_STD = 0.1
log = logging.getLogger(__name__)

def random_crops(clips: Sequence[np.ndarray], batch: int, samples: int, generator: torch.Generator) -> Tensor:
    """`batch` crops of `samples` from clips drawn with probability proportional to length; short clips are zero-padded."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.float64)
    picks = torch.multinomial(lengths, batch, replacement=True, generator=generator)
    out = torch.zeros(batch, samples)
    for row, i in enumerate(picks.tolist()):
        clip = clips[i]
        start = int(torch.randint(0, max(1, len(clip) - samples + 1), (1,), generator=generator))
        piece = torch.from_numpy(np.asarray(clip[start: start + samples], dtype=np.float32))
        out[row, : len(piece)] = piece
    return out


def cosine_with_warmup(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


class CodecTrainer:
    """The generator, the critics, their optimisers and the step counter, with save/resume."""

    def __init__(self, config: CodecTrainConfig, device: torch.device):
        self.config, self.device = config, device
        torch.manual_seed(config.seed)
        self.model = WavTokenizer(config.arch()).to(device)
        self.model.quantizer.codebook.threshold_ema_dead_code = (
            config.dead_code_usage * self.frames_per_step / config.codebook_size)
        self.critics = Discriminators(len(self.model.arch.bandwidths), config.critic_width).to(device)
        self.mel_loss = MelLoss(self.model.sample_rate).to(device)
        self.schedule = cosine_with_warmup(config.warmup_steps, config.steps)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), lr=config.learning_rate)
        self.opt_d = torch.optim.AdamW(self.critics.parameters(), lr=config.learning_rate)
        self.data_rng = torch.Generator().manual_seed(config.seed)
        self.step = 0

    def state(self) -> dict:
        return {"step": self.step, "model": self.model.state_dict(), "critics": self.critics.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "data_rng": self.data_rng.get_state(), "torch_rng": torch.get_rng_state(),
                "config": json.dumps(to_dict(self.config), sort_keys=True)}

    def save(self, path: Path) -> None:
        with atomic_output(path) as tmp:
            torch.save(self.state(), tmp)

    def resume(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["config"] != json.dumps(to_dict(self.config), sort_keys=True):
            raise ValueError(f"{path} was written with another codec training config; use a fresh output folder")
        self.model.load_state_dict(state["model"])
        self.critics.load_state_dict(state["critics"])
        for name in ("opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        self.data_rng.set_state(state["data_rng"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        self.step = state["step"]

    def export(self, prefix: Path) -> None:
        """`prefix`.ckpt + `prefix`.yaml in the official layout; the critics only once they have trained."""
        c = self.config
        critics = self.critics.state_dict() if self.step > c.gan_start_step else None
        save_codec(self.model, prefix.with_suffix(".ckpt"), prefix.with_suffix(".yaml"), extra_state=critics,
                   global_step=self.step, training={"initial_learning_rate": c.learning_rate,
                                                    "mel_loss_coeff": c.mel_loss_coeff,
                                                    "mrd_loss_coeff": c.mrd_loss_coeff})

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
        latents = self.model.latents(audio)
        codebook = self.model.quantizer.codebook
        if codebook.is_initialised:
            features, codes, commit = self.model.quantizer(latents)
            logs = {"codebook/codes_in_batch": float(codes.unique().numel()), "codebook/restarted": codebook.last_restarts}
        else:
            features, commit, logs = latents, latents.new_zeros(()), {}
        audio_hat = self.model.head(self.model.backbone(features, cond))
        use_gan = self.step >= c.gan_start_step
        if use_gan:
            loss_d = sum(w * discriminator_hinge(critic(audio, cond)[0], critic(audio_hat.detach(), cond)[0])
                         for w, critic in zip((1.0, c.mrd_loss_coeff), self.critics.critics()))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            logs["critic/total"] = loss_d.item()
        mel = self.mel_loss(audio_hat, audio)
        loss_g = c.mel_loss_coeff * mel + c.commit_loss_coeff * commit
        if use_gan:
            for w, name, critic in zip((1.0, c.mrd_loss_coeff), ("mp", "mrd"), self.critics.critics()):
                with torch.no_grad():
                    _, real_fmaps = critic(audio, cond)
                fake_scores, fake_fmaps = critic(audio_hat, cond)
                gan, fm = generator_hinge(fake_scores), feature_matching(real_fmaps, fake_fmaps)
                loss_g = loss_g + w * (gan + fm)
                logs[f"generator/gan_{name}"], logs[f"generator/fm_{name}"] = gan.item(), fm.item()
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


def train_codec(train_clips: Sequence[np.ndarray], valid_clips: Sequence[np.ndarray], out_dir: Path,
                config: CodecTrainConfig, device: str = "cpu", progress: bool = True) -> dict[str, float]:
    """Train (or resume) a codec in `out_dir`; returns the final metrics also written to codec.metrics.json."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    if not train_clips:
        raise ValueError("train_codec: no training audio")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = CodecTrainer(config, torch.device(device))
    state_path = out_dir / "state.pt"
    if state_path.exists():
        trainer.resume(state_path)
        log.info("resumed from %s: step %d of %d", state_path, trainer.step, config.steps)
    writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=trainer.step)
    started, first_step = time.monotonic(), trainer.step
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not progress, desc="train_codec", unit="step")
    while trainer.step < config.steps:
        logs = trainer.train_step(train_clips)
        bar.update(1)
        bar.set_postfix(mel=f"{logs['generator/mel_l1']:.3f}", codes=int(logs.get("codebook/codes_in_batch", 0)))
        if trainer.step % config.log_every == 0:
            for key, value in logs.items():
                writer.add_scalar(key, value, trainer.step)
        if config.snapshot_every and trainer.step % config.snapshot_every == 0:
            trainer.export(out_dir / "snapshots" / f"step-{trainer.step:06d}")
        if trainer.step % config.checkpoint_every == 0 or trainer.step == config.steps:
            trainer.save(state_path)
    bar.close()
    metrics = {"steps": trainer.step, "seconds_this_run": time.monotonic() - started,
               "steps_per_second_this_run": (trainer.step - first_step) / max(1e-9, time.monotonic() - started),
               **trainer.evaluate(valid_clips or train_clips)}
    for key in ("valid/mel_l1", "valid/codes_used"):
        writer.add_scalar(key, metrics[key], trainer.step)
    writer.close()
    trainer.export(out_dir / "codec")
    with atomic_output(out_dir / "codec.metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def read_audio_shards(paths: Sequence[Path]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training and validation waveforms (float32, mono) from `resample` audio shards; eval clips stay unseen."""
    train, valid = [], []
    for path in paths:
        table = read_table(Path(path), AUDIO_SHARD, columns=["split", "audio"])
        for split, audio in zip(table.column("split").to_pylist(), table.column("audio").to_pylist()):
            if split in ("train", "valid"):
                wav, _ = sf.read(io.BytesIO(audio), dtype="float32")  # FLAC bytes, as stages.audio writes them
                (train if split == "train" else valid).append(wav if wav.ndim == 1 else wav.mean(axis=1))
    return train, valid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.codec.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("shards", type=Path, nargs="+", help="audio shards written by the resample stage")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="YAML file: a mapping of CodecTrainConfig keys")
    source.add_argument("--config-json", help="the same mapping as a JSON string (what the Snakemake rule passes)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    values = (yaml.safe_load(args.config.read_text()) if args.config
              else json.loads(args.config_json) if args.config_json else {})
    config = from_dict(CodecTrainConfig, values, str(args.config or "codec.train"))
    train, valid = read_audio_shards(args.shards)
    metrics = train_codec(train, valid, args.out_dir, config, args.device)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
