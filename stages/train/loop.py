"""The training loop shared by pretraining and SFT: DeepSpeed ZeRO, AdamW with warm-up + cosine, exact resume.

    torchrun --standalone --nproc_per_node 1 -m stages.train_lm ...     # the stage that runs it (stages/train_lm.py)

`Trainer` builds the model (from a preset, or from an initial model for SFT) once its inputs are found to
fit together (compat.py), wraps it in a DeepSpeed engine with torch's AdamW (DeepSpeed's own Adam kernels
would be JIT-compiled first) and resumes from the latest checkpoint of this very run in its checkpoint
folder (resume.py). `fit` trains until the step or token budget is spent, logging to TensorBoard,
`metrics.jsonl` and a progress bar, validating and checkpointing on schedule; `export` consolidates the
last checkpoint into a model folder that loads without DeepSpeed (consolidate.py).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from stages.config import to_dict
from stages.config.base import ConfigError
from stages.config.model import GenerationConfig, load_model_config
from stages.lm.alignment_loss import AlignmentObjective
from stages.lm.attention_prior import alignment_prior, prior_weight
from stages.lm.export import LoadedModel
from stages.lm.generate import fit_length_ratios
from stages.lm.model import MiniMindTTS
from stages.lm.size import describe
from stages.lm.vocab import IGNORE_INDEX, Vocab
from stages.text.tokenizer import TextTokenizer
from stages.train import checkpoint, compat, resume
from stages.train.batching import validation_batches
from stages.config.pretrain import TrainConfig
from stages.train.consolidate import export_model, write_run_files
from stages.train.corpus import CorpusIndex, Subset, codec_metadata, index_corpus, overhead
from stages.train.data import Batch, Position, SpeakerTokens, TrainBatches, read_batches
from stages.train.distributed import init_distributed
from stages.train.engine import (StepStats, StepSums, build_engine, deepspeed_config, global_counts, resolve_precision,
                                 train_step)
from stages.train.metrics import MetricsLog, progress_bar
from stages.train.prefetch import Prefetched

log = logging.getLogger("train")


class Trainer:
    """One training run: data, model and DeepSpeed engine, resumed from `checkpoint_dir` when it holds one.

    `section` is the config section `config` came from (pretrain, sft): errors about a setting name it.
    """

    def __init__(self, codes: Sequence[Path], tokenizer_dir: Path, checkpoint_dir: Path, config: TrainConfig,
                 init_from: Optional[Path] = None, threads: Optional[int] = None, progress: bool = True,
                 section: str = "train"):
        if threads:
            torch.set_num_threads(threads)
        self.dist = init_distributed()
        self.config, self.progress, self.section = config, progress, section
        self.codes, self.tokenizer_dir = [Path(c) for c in codes], Path(tokenizer_dir)
        self.checkpoint_dir, self.init_from = Path(checkpoint_dir), Path(init_from) if init_from else None
        self.codec = codec_metadata(self.codes)
        self.tokenizer = TextTokenizer.load(self.tokenizer_dir)
        self.speaker_tokens = config.speaker_tokens

        initial = self._initial_model()
        self.model_config = initial.model.config if initial else load_model_config(config.model_preset)
        if config.dropout is not None:
            self.model_config = replace(self.model_config, dropout=config.dropout)
        if config.alignment_loss_weight and config.alignment_loss_first_layer >= self.model_config.n_layers:
            raise ConfigError(f"{section}.alignment_loss_first_layer: {config.alignment_loss_first_layer} is not "
                              f"below the model's n_layers {self.model_config.n_layers}")
        self.train_index, self.valid_index = self._index_data()
        self.vocab = initial.vocab if initial else self._new_vocab()
        compat.check_vocab(self.vocab, self.codec, self.train_index.speakers + self.valid_index.speakers,
                           self.speaker_tokens, self.init_from, section)
        self.generation = self._fit_generation(initial.generation if initial else GenerationConfig())

        # the same seed on every process: identical initial weights without a broadcast
        torch.manual_seed(config.seed)
        model = MiniMindTTS(self.model_config, self.vocab.size)
        if initial:
            model.load_state_dict(initial.model.state_dict())
        self.data = TrainBatches(self.train_index, self.vocab, self.speaker_tokens, config.batch_tokens,
                                 config.shuffle_buffer, config.sort_buffer, config.seed, self.dist.rank,
                                 self.dist.world_size, config.speaker_dropout if self.speaker_tokens else 0.0)
        self.valid_plan = validation_batches(self.valid_index, self.vocab, self.speaker_tokens, config.batch_tokens,
                                             self.dist.rank, self.dist.world_size)
        self.total_steps = self._horizon()
        self.fingerprint = resume.fingerprint(config, self.model_config, self.vocab, self.codec, self.train_index,
                                              self.init_from)
        # resume or start afresh: decided before the costly engine
        resume_tag = resume.claim_checkpoint_dir(self.checkpoint_dir, self.fingerprint, self.dist.is_main)
        self.tokens = 0
        # a token-budget run decays its lr by the share of the budget spent, which a resume with another
        # number of processes leaves continuous (its step estimate, total_steps, is for the progress bar)
        budget_spent = (lambda: self.tokens / config.token_budget) if config.token_budget is not None else None
        self.engine = build_engine(model, config, self.dist.world_size, self.precision,
                                   config.max_steps if budget_spent else self.total_steps, budget_spent)
        # each process its own dropout stream, restored exactly on resume
        seed = config.seed + 1 + self.dist.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

        self.step, self.tokens, self.position, self.saved_step = 0, 0, Position(world_size=self.dist.world_size), -1
        if resume_tag:
            self.step, self.tokens, self.position = resume.restore(self.engine, self.checkpoint_dir, resume_tag,
                                                                   self.dist)
            self.saved_step = self.step
        self._write_resolved_config()
        self.metrics = MetricsLog(self.checkpoint_dir, self.step, self.dist.is_main)
        if self.dist.is_main:
            log.info("%s", describe(self.model_config, self.vocab.size))
            log.info("train: %d utterances (dropped %s), valid: %d; %d batches per epoch per process; "
                     "%d steps planned; precision %s, ZeRO-%d, %d process(es) on %s",
                     len(self.train_index), self.train_index.dropped or "none", len(self.valid_index),
                     len(self.data), self.total_steps, self.precision, config.zero_stage, self.dist.world_size,
                     self.dist.device)

    # --- set-up ------------------------------------------------------------------------------------

    def _initial_model(self) -> Optional[LoadedModel]:
        """The pretrained model SFT starts from, checked against this run's tokenizer and codec."""
        if self.init_from is None:
            return None
        return compat.initial_model(self.init_from, self.tokenizer, self.tokenizer_dir, self.codec,
                                    self.config.speaker_tokens, self.section)

    def _index_data(self) -> tuple[CorpusIndex, CorpusIndex]:
        c = self.config
        if "valid" in c.splits and self.dist.is_main:
            log.warning("training on the 'valid' split: validation loss then measures training data")
        max_len = min(self.model_config.max_seq_len, c.batch_tokens)
        extra = overhead(self.speaker_tokens)
        train = index_corpus(self.codes, self.tokenizer, Subset(c.splits, c.speakers, c.languages), c.min_codes,
                             c.max_codes, max_len, extra)
        valid = index_corpus(self.codes, self.tokenizer, Subset(("valid",), c.speakers, c.languages), c.min_codes,
                             c.max_codes, max_len, extra)
        if len(train) == 0:
            raise ValueError(f"no utterance to train on in {len(self.codes)} shard(s): splits {list(c.splits)}, "
                             f"speakers {list(c.speakers) or 'all'} (the shards have {sorted(train.all_speakers)}), "
                             f"languages {list(c.languages) or 'all'}, {c.min_codes}..{c.max_codes} codes; "
                             f"dropped by length: {train.dropped or 'none'}")
        return train, valid

    def _new_vocab(self) -> Vocab:
        codebook = int(self.codec["codebook_size"])
        speakers = sorted(set(self.train_index.speakers) | set(self.valid_index.speakers))
        return Vocab(n_text=self.tokenizer.vocab_size, n_speech=codebook,
                     speakers=tuple(speakers) if self.speaker_tokens else ())

    def _fit_generation(self, base: GenerationConfig) -> GenerationConfig:
        low, high = fit_length_ratios(self.train_index.n_text.tolist(), self.train_index.n_codes.tolist())
        return replace(base, min_len_ratio=low, max_len_ratio=high)

    def _horizon(self) -> int:
        """Steps the cosine decays over: max_steps, or the steps the token budget lasts (estimated on epoch 0)."""
        c = self.config
        if c.token_budget is None:
            return c.max_steps
        lengths = self.data.lengths
        per_batch = float(np.mean([lengths[b].sum() for b in self.data.global_plan()]))
        steps = math.ceil(c.token_budget / (per_batch * c.grad_accum * self.dist.world_size))
        return min(steps, c.max_steps) if c.max_steps is not None else steps

    @property
    def precision(self) -> str:
        return resolve_precision(self.config.precision, self.dist.device, self.section)

    def deepspeed_config(self) -> dict:
        return deepspeed_config(self.config, self.dist.world_size, self.precision)

    def _write_resolved_config(self) -> None:
        if not self.dist.is_main:
            return
        resolved = {"train": to_dict(self.config), "model": to_dict(self.model_config), "vocab": self.vocab.to_dict(),
                    "generation": to_dict(self.generation), "codec": self.codec, "deepspeed": self.deepspeed_config(),
                    "precision": self.precision, "world_size": self.dist.world_size, "total_steps": self.total_steps,
                    "inputs": {"codes": [str(p) for p in self.codes], "tokenizer": str(self.tokenizer_dir),
                               "init_from": str(self.init_from) if self.init_from else None},
                    "data": {"train_utterances": len(self.train_index), "valid_utterances": len(self.valid_index),
                             "dropped": self.train_index.dropped, "batches_per_epoch": len(self.data)}}
        write_run_files(self.checkpoint_dir, resolved, self.codec)

    # --- training ----------------------------------------------------------------------------------

    def done(self) -> bool:
        c = self.config
        return ((c.max_steps is not None and self.step >= c.max_steps)
                or (c.token_budget is not None and self.tokens >= c.token_budget))

    def train_step(self, batches: Sequence[Batch]) -> StepSums:
        """One optimizer step; its tokens count before the schedule sets the next step's lr (a token budget's)."""
        counts = global_counts(batches, self.dist)
        self.tokens += counts[1]
        return train_step(self.engine, batches, self.dist.device, self.dist, counts, self.attention_prior(),
                          self.alignment_objective())

    def attention_prior(self) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """This step's alignment prior as a function of the input ids (attention_prior.py), or None once it is spent."""
        weight = prior_weight(self.step, self.config.alignment_prior_steps)
        if weight == 0.0:
            return None
        width = self.config.alignment_prior_width
        return lambda input_ids: alignment_prior(input_ids, self.vocab, width) * weight

    def alignment_objective(self) -> Optional[AlignmentObjective]:
        """The CTC alignment loss of every step (alignment_loss.py), or None when its weight is 0."""
        c = self.config
        if c.alignment_loss_weight == 0:
            return None
        return AlignmentObjective(self.vocab, c.alignment_loss_weight, c.alignment_loss_first_layer,
                                  c.alignment_loss_prior_width)

    def fit(self) -> None:
        """Train until the budget is spent, validating and checkpointing on schedule; always ends on a checkpoint.

        Batches are built ahead in a background thread (prefetch.py); the step's statistics stay on the device
        and are read, with the gradient norm, only when logged, so the host waits for the device only there.
        """
        c = self.config
        on_gpu = self.dist.device.type == "cuda"
        bar = progress_bar(self.total_steps, self.step, self.progress and self.dist.is_main)
        window, window_seconds = StepSums(), 0.0
        self.engine.train()
        with Prefetched(self.data.stream(self.position), depth=c.prefetch_batches, pin_memory=on_gpu) as stream:
            while not self.done():
                started = time.perf_counter()
                lr = self.engine.get_lr()[0]
                micro = []
                for _ in range(c.grad_accum):
                    batch, self.position = next(stream)
                    micro.append(batch)
                step = self.train_step(micro)
                self.step += 1
                window = window.add(step)
                if self.step % c.log_every == 0 or self.done():
                    self.log_window(window.read(self.dist), lr, window_seconds + time.perf_counter() - started, bar)
                    window, window_seconds = StepSums(), 0.0
                else:
                    window_seconds += time.perf_counter() - started
                bar.update(1)
                if self.step % c.validate_every == 0 or self.done():
                    self.keep_if_best(self.validate())
                if (self.step % c.checkpoint_every == 0 or self.done()) and self.saved_step != self.step:
                    self.save()
        bar.close()
        if self.saved_step != self.step:  # resumed at the end of a finished run
            self.save()

    def log_window(self, window: StepStats, lr: float, seconds: float, bar) -> None:
        """The steps since the last log, in metrics.jsonl, TensorBoard and the progress bar."""
        grad_norm = self.engine.get_global_grad_norm()  # of the last step; reading it waits for the device
        scalars = {"loss": window.loss, "accuracy": window.accuracy, "lr": lr,
                   "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
                   "tokens_per_s": window.real_tokens / max(seconds, 1e-9), "nonpad_share": window.nonpad_share,
                   "epoch": self.position.epoch, "tokens": self.tokens}
        if self.config.alignment_prior_steps:
            scalars["alignment_prior"] = prior_weight(self.step - 1, self.config.alignment_prior_steps)
        if self.config.alignment_loss_weight:
            scalars["alignment_loss"] = window.alignment_sum / max(window.micro_batches, 1.0)
        if self.model_config.is_moe:
            scalars["aux_loss"] = window.aux_sum / max(window.micro_batches, 1.0)
        self.metrics.write(self.step, "train", scalars)
        bar.set_postfix(loss=f"{window.loss:.3f}", acc=f"{window.accuracy:.3f}", lr=f"{lr:.2e}",
                        tok_s=f"{scalars['tokens_per_s']:.0f}", refresh=False)

    @torch.no_grad()
    def validate(self) -> Optional[dict]:
        """Loss and speech-token accuracy on the valid split (None when it is empty), logged at this step."""
        device = self.dist.device
        sums, targets = torch.zeros(4, dtype=torch.float64, device=device), 0
        self.engine.eval()
        for batch in read_batches(self.valid_index, self.valid_plan, self.vocab, SpeakerTokens(self.speaker_tokens)):
            out = self.engine(batch.input_ids.to(device), targets=batch.targets.to(device))
            n = out.n_targets.double()
            sums += torch.stack([out.ce_loss.double() * n, out.accuracy.double() * n, torch.zeros_like(n),
                                 torch.zeros_like(n)])
            targets += int((batch.targets != IGNORE_INDEX).sum())
        self.engine.train()
        stats = StepSums(sums, self.dist.sum_on_host([targets])[0]).read(self.dist)
        if stats.targets == 0:
            return None
        scalars = {"loss": stats.loss, "accuracy": stats.accuracy}
        self.metrics.write(self.step, "val", scalars)
        return scalars

    def keep_if_best(self, scores: Optional[dict]) -> None:
        """With `export: best`, save at once a validation better than any before and mark it best."""
        if self.config.export != "best" or scores is None:
            return
        # the main process reads the mark and tells the others: ranks that read a shared folder differently
        # would disagree on calling save(), a collective, and hang
        marked = checkpoint.best(self.checkpoint_dir) if self.dist.is_main else None
        better = [marked is None or scores["loss"] < marked["loss"]]
        torch.distributed.broadcast_object_list(better, src=0)
        if not better[0]:
            return
        if self.saved_step != self.step:
            self.save()
        if self.dist.is_main:
            checkpoint.write_best(self.checkpoint_dir, checkpoint.tag_of(self.step), scores["loss"])
        torch.distributed.barrier()

    def save(self) -> None:
        state = resume.client_state(self.step, self.tokens, self.position, self.dist)
        checkpoint.save(self.engine, self.checkpoint_dir, self.step, state, self.config.keep_checkpoints,
                        self.dist.is_main)
        self.saved_step = self.step
        self.metrics.flush()

    def export(self, out_dir: Path) -> Path:
        """Consolidate the latest (or best, `export: best`) checkpoint into `out_dir`, with its run's files."""
        return export_model(self.checkpoint_dir, self.model_config, self.vocab, self.generation, self.tokenizer_dir,
                            out_dir, self.dist.is_main, self.config.export)

    def close(self) -> None:
        self.metrics.close()
