"""A loaded model, tokenizer and codec, and the one batch generate-and-decode call every caller goes through.

    tts = Synthesizer("results/demo/sft/model", "assets/codec/demo-75hz.yaml", "assets/codec/demo-75hz.ckpt")
    speech = tts.say("Wisdom is better than rubies.", speaker="rms")   # Speech: audio, rate, RTF

The codec must be the one the model was trained on: the model folder records its `codec_id`
(codec.json), and another codec is refused here, since its decoder would turn the codes into noise.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from stages.codec import codec_id, load_codec
from stages.codec.streaming import StreamingDecoder
from stages.lm.decode_graph import CompiledDecodeStep
from stages.lm.export import CODEC_FILE, Quantize, load_model
from stages.lm.generate import Generated, Request, generate, stream
from stages.text.normalize import detect_language
from stages.text.sentences import split_sentences
from stages.text.tokenizer import TextTokenizer

log = logging.getLogger(__name__)
PAUSE_SECONDS = 0.2  # between sentences: a natural breath, short enough not to sound like a stall


class CodecMismatch(ValueError):
    """The codec given is not the one whose codes the model was trained on."""


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray          # float32 mono at `sample_rate`
    sample_rate: int
    sentences: list[str]
    stop_reasons: list[str]    # per sentence: "eos" or "max_length"
    seconds_taken: float       # LM + codec time

    @property
    def rtf(self) -> float:
        return self.seconds_taken / max(len(self.audio) / self.sample_rate, 1e-9)


@dataclass(frozen=True)
class Spoken:
    """One request's generated codes (with why generation stopped) and their decoded audio."""

    generated: Generated
    audio: np.ndarray


def check_codec(model_dir: Path, codec_checkpoint: Path | str, codec_id_given: str) -> None:
    record = Path(model_dir) / CODEC_FILE
    if not record.exists():
        log.warning("%s has no %s: cannot check that %s is the codec it was trained on", model_dir, CODEC_FILE,
                    codec_checkpoint)
        return
    trained = json.loads(record.read_text(encoding="utf-8")).get("codec_id")
    if trained != codec_id_given:
        raise CodecMismatch(f"{codec_checkpoint} is codec {codec_id_given}, but {model_dir} was trained on the codes "
                            f"of codec {trained} ({record}); its decoder would turn them into noise. Pass the codec "
                            "the model was trained with.")


class Synthesizer:
    """Speak with a trained model: `speak(requests)` for batches of prepared requests, `say(text)` for text."""

    def __init__(self, model_dir: Path | str, codec_config: Path | str, codec_checkpoint: Path | str,
                 device: str = "cpu", quantize: Quantize = "none", dtype: Optional[torch.dtype] | str = "auto",
                 compile: bool = False, **generation_overrides):
        # quantize="int8": the LM's linear layers in dynamic int8 on a CPU; dtype=torch.bfloat16 the LM in
        # bf16 on a CPU ("auto": bf16 on a GPU that has it, else fp32). Both decode codes that may drift
        # from fp32's. compile: every decode step after the prompt's as one torch.compile graph
        # (stages/lm/decode_graph.py), compiled here; README "Synthesis speed" measures all three
        loaded = load_model(model_dir, device=device, dtype=dtype, quantize=quantize, fuse=True)
        self.model, self.vocab = loaded.model, loaded.vocab
        self.generation = replace(loaded.generation, **generation_overrides)
        self.decode_step = CompiledDecodeStep(self.model) if compile else None
        if self.decode_step is not None:
            self._compile_decode_step()
        self.tokenizer = TextTokenizer.load(model_dir)
        self.codec = load_codec(codec_config, codec_checkpoint, device=device)
        check_codec(Path(model_dir), codec_checkpoint, codec_id(self.codec))
        self.device = device

    @torch.inference_mode()
    def _compile_decode_step(self) -> None:
        """Compile the step's two graphs now (a batch of one, and of more), so that no request waits for them."""
        started = time.perf_counter()
        log.info("compiling the decode step (once per process; about a minute for 26m on 2 cores)")
        two_codes = replace(self.generation, min_len_ratio=2.0, max_len_ratio=2.0)
        for batch in ([Request((0,))], [Request((0,)), Request((0, 0))]):
            generate(self.model, self.vocab, batch, two_codes, decode_step=self.decode_step)
        log.info("decode step compiled in %.1f s", time.perf_counter() - started)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def request(self, text: str, language: str = "auto", speaker: Optional[str] = None,
                prompt_text: str = "", prompt_codes: Sequence[int] = ()) -> Request:
        """One sentence to speak, by speaker token or as the continuation of a voice prompt (zero-shot)."""
        language = detect_language(text) if language == "auto" else language
        prompt_ids = tuple(self.tokenizer.encode(prompt_text, detect_language(prompt_text))) if prompt_text else ()
        return Request(tuple(self.tokenizer.encode(text, language)), speaker, prompt_ids, tuple(prompt_codes))

    @torch.inference_mode()
    def speak(self, requests: Sequence[Request]) -> list[Spoken]:
        """Generate codes for the requests as one batch and decode each into audio."""
        spoken = []
        for generated in generate(self.model, self.vocab, list(requests), self.generation,
                                  decode_step=self.decode_step):
            if not generated.codes:
                raise RuntimeError("the model produced no speech codes for a sentence")
            codes = torch.tensor([generated.codes], dtype=torch.long, device=self.device)
            spoken.append(Spoken(generated, self.codec.decode(codes)[0].float().cpu().numpy()))
        return spoken

    @torch.inference_mode()
    def encode_audio(self, samples: np.ndarray) -> list[int]:
        wav = torch.from_numpy(samples).float()[None].to(self.device)
        codes, lengths = self.codec.encode(wav, torch.tensor([wav.shape[1]], device=self.device))
        return codes[0, :int(lengths[0])].tolist()

    def _sentence_requests(self, text: str, language: str, speaker: Optional[str],
                           prompt: Optional[tuple[str, np.ndarray]]) -> tuple[list[str], list[Request]]:
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError("nothing to say: the text is empty")
        language = detect_language(text) if language == "auto" else language
        prompt_text, prompt_codes = (prompt[0], self.encode_audio(prompt[1])) if prompt is not None else ("", ())
        return sentences, [self.request(s, language, speaker, prompt_text, prompt_codes) for s in sentences]

    def say(self, text: str, language: str = "auto", speaker: Optional[str] = None,
            prompt: Optional[tuple[str, np.ndarray]] = None) -> Speech:
        """Speak `text`; `prompt` = (transcript, samples at the codec's rate) of a voice to continue (zero-shot)."""
        started = time.perf_counter()
        sentences, requests = self._sentence_requests(text, language, speaker, prompt)
        spoken = self.speak(requests)
        pause = np.zeros(int(PAUSE_SECONDS * self.sample_rate), np.float32)
        pieces = [piece for s in spoken for piece in (s.audio, pause)][:-1]
        return Speech(np.concatenate(pieces).astype(np.float32), self.sample_rate, sentences,
                      [s.generated.stop_reason for s in spoken], time.perf_counter() - started)

    @torch.inference_mode()
    def say_streaming(self, text: str, language: str = "auto", speaker: Optional[str] = None,
                      prompt: Optional[tuple[str, np.ndarray]] = None) -> Iterator[np.ndarray]:
        """Audio chunks as soon as they are decoded, sentence after sentence; `prompt` as in `say`.
        Generation advances only as chunks are taken, so closing the iterator stops it."""
        for request in self._sentence_requests(text, language, speaker, prompt)[1]:
            decoder = StreamingDecoder(self.codec)
            for chunk in stream(self.model, self.vocab, request, self.generation, decode_step=self.decode_step):
                audio = decoder.push(chunk.codes)
                if len(audio):
                    yield audio
            yield decoder.finish()
            yield np.zeros(int(PAUSE_SECONDS * self.sample_rate), np.float32)
