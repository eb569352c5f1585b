"""The `pretrain` section: one LM training run (model, DeepSpeed, schedule, budget, batching, data subset).

    python -c "from stages.config.pretrain import TrainConfig; print(TrainConfig())"

The defaults are sized for the CPU demo (tiny preset, a few hundred steps on 2 cores). The `sft` section
(stages/config/sft.py) is the same run continued from pretrained weights, so it extends this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from stages.config.base import ConfigError, from_dict, setting
from stages.config.model import ModelConfig
from stages.config.presets import PRESET_NAME, REPO, preset_path, read_preset

DEEPSPEED_CONFIGS = REPO / "configs" / "deepspeed"

# Keys that may change between a run and its resumption: how long to train, how often to log or save, and how
# far ahead batches are built.
# Everything else changes what a step computes, so a checkpoint written under other values is refused.
RESUMABLE_CHANGES = frozenset({"max_steps", "token_budget", "checkpoint_every", "keep_checkpoints",
                               "validate_every", "log_every", "export", "prefetch_batches"})


@dataclass(frozen=True)
class TrainConfig:
    """One training run of the LM (pretraining, or SFT from pretrained weights) with DeepSpeed ZeRO."""

    model: str = setting(
        "tiny", "model preset, configs/model/<name>.yaml; tiny trains on 2 CPU cores in minutes. Ignored with an "
                "initial model (SFT), whose own shape is kept.", pattern=PRESET_NAME)
    dropout: Optional[float] = setting(
        None, "overrides the preset's dropout; null keeps it (0). 0.1 helps SFT on a small subset.",
        minimum=0.0, maximum=1.0)
    speaker_tokens: bool = setting(
        True, "condition on a speaker token per utterance, so synthesis can pick a training voice; the speaker "
              "list is fixed at pretraining and SFT reuses it.")
    speaker_dropout: float = setting(
        0.2, "share of training sequences (drawn anew each epoch, by a hash of the utterance) that leave the "
             "speaker token out, so that a zero-shot request (a voice prompt and no speaker token) has a layout "
             "seen in training. Validation always keeps the token.", minimum=0.0, maximum=1.0)
    alignment_prior_steps: int = setting(
        0, "steps over which an attention prior pulls each speech position's attention towards the text at the "
           "same share of the utterance (stages/lm/attention_prior.py), so the LM learns early that the text decides "
           "what is said; full weight for the first half, annealed to 0 at the end. 0: off. Keep it below "
           "max_steps, so the model trains on without it and inference matches.", minimum=0)
    alignment_prior_width: float = setting(
        2.0, "the prior's Gaussian width in text tokens: a text token d tokens from the one a speech position "
             "is expected to read loses d^2 / (2 width^2) from that position's attention logit (at full weight).",
        exclusiveMinimum=0.0)
    alignment_loss_weight: float = setting(
        0.0, "weight of the CTC alignment loss (stages/lm/alignment_loss.py), added to the cross-entropy on every "
             "step: each layer's attention of the speech positions over the text must be a monotonic path through "
             "every text token, so the LM learns to read its text once, in order, and keeps doing so without a "
             "prior. Per speech position, on the cross-entropy's scale. 0: off.", minimum=0.0)
    alignment_loss_first_layer: int = setting(
        1, "the alignment loss applies to this layer (0-based) and every later one; the first layer cannot yet "
           "know how far through its utterance a position is. Must be below the preset's n_layers.", minimum=0)
    alignment_loss_prior_width: float = setting(
        4.0, "width in text tokens of the Gaussian prior around the diagonal on what the alignment loss scores "
             "(not on the attention): without it the loss is met by a position trick that holds the first text "
             "token, runs through the text at one token a code, then holds the last (measured, README). A path "
             "d tokens off the diagonal costs d^2 / (2 width^2) a position. 0: no prior.", minimum=0.0)
    zero_stage: Literal[1, 2, 3] = setting(
        2, "DeepSpeed ZeRO stage (configs/deepspeed/zero<N>.json): 2 shards optimizer state and gradients, "
           "the usual best trade-off; 3 also shards the weights, for models that do not fit one device.")
    precision: Literal["auto", "bf16", "fp32"] = setting(
        "auto", "auto: bf16 on GPUs that support it, else fp32 (the CPU: bf16 matmuls are slow on most CPUs).")
    lr: float = setting(1e-3, "peak AdamW learning rate; 1e-3 suits a ~1M-parameter model (nanoGPT's small runs); "
                              "use ~5e-4 for 26m and ~2e-4 for SFT.", exclusiveMinimum=0.0)
    min_lr: float = setting(1e-4, "learning rate at the end of the cosine decay: a tenth of the peak "
                                  "(Chinchilla, Llama).", minimum=0.0)
    warmup_steps: int = setting(50, "linear warm-up from 0 to lr; a few % of the run keeps early Adam "
                                    "updates, made from noisy moment estimates, small.", minimum=0)
    max_steps: Optional[int] = setting(
        600, "optimizer steps to train: ~9 epochs of the demo corpus (65 batches each), ~8 min at the ~7k tokens/s "
             "the tiny model trains at on 2 free CPU cores. null: stop on token_budget only.", minimum=1)
    token_budget: Optional[int] = setting(
        None, "stop after this many real (non-padding) tokens, summed over all processes; null: max_steps "
              "only. With both, whichever comes first.", minimum=1)
    weight_decay: float = setting(0.1, "AdamW decoupled weight decay on matrices (not norms), as Llama.", minimum=0.0)
    betas: tuple[float, ...] = setting((0.9, 0.95), "AdamW betas; 0.95 (Llama, GPT-3) reacts faster than 0.999 "
                                                    "to loss spikes.")
    grad_clip: float = setting(1.0, "clip the global gradient norm to this (Llama, GPT-3); 0 disables.", minimum=0.0)
    grad_accum: int = setting(1, "micro-batches per optimizer step, per process; raise it to keep the tokens per "
                                 "step when memory limits batch_tokens.", minimum=1)
    batch_tokens: int = setting(
        6000, "padded tokens per micro-batch (longest sequence x sequences), CosyVoice's max_frames_in_batch "
              "idea; ~15 demo utterances at 97% real tokens, under a second per step for the tiny model on 2 cores.",
        minimum=1)
    prefetch_batches: int = setting(
        2, "micro-batches a background thread builds ahead of the step (pinned on a GPU), so reading codes never "
           "stalls the device; each holds one batch_tokens of int64 tensors.", minimum=1)
    shuffle_buffer: int = setting(1000, "utterances shuffled together before sorting (CosyVoice's shuffle_size).",
                                  minimum=1)
    sort_buffer: int = setting(
        500, "utterances sorted by length before batching (CosyVoice's sort_size): larger gives less padding, "
             "smaller more varied batches.", minimum=1)
    min_codes: int = setting(10, "drop utterances with fewer speech codes (a fraction of a second: clipped or "
                                 "empty audio).", minimum=1)
    max_codes: int = setting(2000, "drop utterances with more speech codes (27 s at 75 codes/s): long outliers "
                                   "would fill whole batches alone.", minimum=1)
    checkpoint_every: int = setting(100, "save a resumable DeepSpeed checkpoint every this many steps (and at "
                                         "the end); ~1.5 minutes of demo training.", minimum=1)
    keep_checkpoints: int = setting(2, "newest checkpoints kept; two, so one survives if the newest is damaged.",
                                    minimum=1)
    export: Literal["last", "best"] = setting(
        "last", "which checkpoint becomes the model folder: the last, or the one of the lowest validation loss "
        "(each improvement is saved at once and kept through pruning; best needs a valid split).")
    validate_every: int = setting(100, "validation loss on the valid split every this many steps (and at the end).",
                                  minimum=1)
    log_every: int = setting(10, "steps between TensorBoard / metrics.jsonl entries.", minimum=1)
    seed: int = setting(1234, "seeds the weights, the data order (with the epoch) and dropout.", minimum=0)
    speakers: tuple[str, ...] = setting((), "train only on these speakers (SFT on one voice); empty: all.")
    languages: tuple[str, ...] = setting((), "train only on these languages; empty: all.")
    splits: tuple[str, ...] = setting(("train",), "splits to train on; 'eval' is refused (it is held out for "
                                                  "evaluation), 'valid' is what validation loss is measured on.")

    def validate(self, where: str = "train") -> None:
        if self.max_steps is None and self.token_budget is None:
            raise ConfigError(f"{where}.max_steps: set max_steps or token_budget (or both), else training never ends")
        if self.min_lr > self.lr:
            raise ConfigError(f"{where}.min_lr: {self.min_lr} is above lr {self.lr}")
        if self.min_codes > self.max_codes:
            raise ConfigError(f"{where}.min_codes: {self.min_codes} is above max_codes {self.max_codes}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"{where}.betas: expected two numbers in [0, 1), got {list(self.betas)}")
        if self.max_steps is not None and self.alignment_prior_steps >= self.max_steps:
            raise ConfigError(f"{where}.alignment_prior_steps: {self.alignment_prior_steps} is not below max_steps "
                              f"{self.max_steps}; the model must train on without the prior, as inference runs")
        if not self.splits:
            raise ConfigError(f"{where}.splits: name at least one split to train on")
        bad = [s for s in self.splits if s not in ("train", "valid")]
        if bad:
            raise ConfigError(f"{where}.splits: {bad} not allowed; train on 'train' (and 'valid' if you must), "
                              "never on 'eval'")
        # the preset file's keys, checked when the DAG is built rather than when training starts
        model = from_dict(ModelConfig, read_preset("model", self.model, f"{where}.model"),
                          f"{where}.model ({self.model_preset})")
        if self.alignment_loss_weight > 0 and self.alignment_loss_first_layer >= model.n_layers:
            raise ConfigError(f"{where}.alignment_loss_first_layer: {self.alignment_loss_first_layer} is not below "
                              f"the {self.model} preset's n_layers {model.n_layers}")

    @property
    def model_preset(self) -> Path:
        return preset_path("model", self.model)

    @property
    def deepspeed_config(self) -> Path:
        return DEEPSPEED_CONFIGS / f"zero{self.zero_stage}.json"
