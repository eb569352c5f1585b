"""Text to speech with a trained MiniMind-TTS model and its codec (the `minimind-tts` command).

    minimind-tts --model results/demo/sft/model --codec-config results/demo/codec/codec.yaml \
        --codec-checkpoint results/demo/codec/codec.ckpt --text "Wisdom is better than rubies." --out say.wav
    minimind-tts ... --text-file lines.txt --out-dir wavs/ [--speaker rms] [--prompt-wav ref.wav --prompt-text "..."]

Long text is split at sentence boundaries; the sentences are generated as one batch (the LM gives the same
codes for a sentence alone or in a batch), decoded by the codec and joined with a short pause. Prints the
real-time factor (processing seconds per second of audio) and why each sentence stopped.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import soundfile as sf
import torch

from stages.audio import read_audio, resample, to_mono
from stages.codec import load_codec
from stages.codec.streaming import StreamingDecoder
from stages.lm.export import load_model
from stages.lm.generate import Request, generate, stream
from stages.text.sentences import split_sentences
from stages.text.tokenizer import TextTokenizer

PAUSE_SECONDS = 0.2  # between sentences: a natural breath, short enough not to sound like a stall
_CJK = re.compile(r"[\u3400-\u9fff]")


def detect_language(text: str) -> str:
    return "zh" if _CJK.search(text) else "en"


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


class Synthesizer:
    """A loaded model, tokenizer and codec; `say(text)` returns the waveform."""

    def __init__(self, model_dir: Path | str, codec_config: Path | str, codec_checkpoint: Path | str,
                 device: str = "cpu", **generation_overrides):
        loaded = load_model(model_dir, device=device)
        self.model, self.vocab = loaded.model, loaded.vocab
        self.generation = replace(loaded.generation, **generation_overrides)
        self.tokenizer = TextTokenizer.load(model_dir)
        self.codec = load_codec(codec_config, codec_checkpoint, device=device)
        self.device = device

    def _requests(self, sentences: list[str], language: str, speaker: Optional[str],
                  prompt: Optional[tuple[str, np.ndarray]]) -> list[Request]:
        prompt_text, prompt_codes = (), ()
        if prompt is not None:
            prompt_text = tuple(self.tokenizer.encode(prompt[0], detect_language(prompt[0])))
            prompt_codes = tuple(self.encode_audio(prompt[1]))
        return [Request(tuple(self.tokenizer.encode(s, language)), speaker, prompt_text, prompt_codes)
                for s in sentences]

    @torch.inference_mode()
    def encode_audio(self, samples: np.ndarray) -> list[int]:
        wav = torch.from_numpy(samples).float()[None].to(self.device)
        codes, lengths = self.codec.encode(wav, torch.tensor([wav.shape[1]], device=self.device))
        return codes[0, :int(lengths[0])].tolist()

    @torch.inference_mode()
    def say(self, text: str, language: str = "auto", speaker: Optional[str] = None,
            prompt: Optional[tuple[str, np.ndarray]] = None) -> Speech:
        """Speak `text`; `prompt` = (transcript, 24 kHz samples) of a voice to continue (zero-shot cloning)."""
        started = time.perf_counter()
        sentences = split_sentences(text)
        if not sentences:
            raise ValueError("nothing to say: the text is empty")
        language = detect_language(text) if language == "auto" else language
        results = generate(self.model, self.vocab, self._requests(sentences, language, speaker, prompt),
                           self.generation)
        pause = np.zeros(int(PAUSE_SECONDS * self.codec.sample_rate), np.float32)
        pieces = []
        for result in results:
            if not result.codes:
                raise RuntimeError("the model produced no speech codes for a sentence")
            codes = torch.tensor([result.codes], dtype=torch.long, device=self.device)
            pieces += [self.codec.decode(codes)[0].cpu().numpy(), pause]
        audio = np.concatenate(pieces[:-1]).astype(np.float32)
        return Speech(audio, self.codec.sample_rate, sentences, [r.stop_reason for r in results],
                      time.perf_counter() - started)

    @torch.inference_mode()
    def say_streaming(self, text: str, language: str = "auto", speaker: Optional[str] = None) -> Iterator[np.ndarray]:
        """Audio chunks as soon as they are decoded, sentence after sentence."""
        language = detect_language(text) if language == "auto" else language
        for request in self._requests(split_sentences(text), language, speaker, None):
            decoder = StreamingDecoder(self.codec)
            for chunk in stream(self.model, self.vocab, request, self.generation):
                audio = decoder.push(chunk.codes)
                if len(audio):
                    yield audio
            yield decoder.finish()
            yield np.zeros(int(PAUSE_SECONDS * self.codec.sample_rate), np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="minimind-tts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by pretrain or sft")
    parser.add_argument("--codec-config", type=Path, required=True)
    parser.add_argument("--codec-checkpoint", type=Path, required=True)
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="what to say")
    text.add_argument("--text-file", type=Path, help="one utterance per line")
    parser.add_argument("--out", type=Path, help="WAV file (with --text)")
    parser.add_argument("--out-dir", type=Path, help="folder for 0001.wav, 0002.wav, ... (with --text-file)")
    parser.add_argument("--language", default="auto", choices=["auto", "en", "zh"])
    parser.add_argument("--speaker", help="speaker token, for models trained with speaker conditioning")
    parser.add_argument("--prompt-wav", type=Path, help="voice to continue (zero-shot), with --prompt-text")
    parser.add_argument("--prompt-text", help="transcript of --prompt-wav")
    parser.add_argument("--temperature", type=float, help="0 decodes greedily; default: the model's")
    parser.add_argument("--ras-window", type=int, help="repetition-aware sampling window in codes; 0 disables")
    parser.add_argument("--ras-tau", type=float, help="RAS threshold (share of the window)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if (args.prompt_wav is None) != (args.prompt_text is None):
        parser.error("--prompt-wav and --prompt-text go together")
    if args.text is not None and args.out is None:
        parser.error("--text needs --out")
    if args.text_file is not None and args.out_dir is None:
        parser.error("--text-file needs --out-dir")
    overrides = {k: v for k, v in (("temperature", args.temperature), ("seed", args.seed),
                                   ("ras_window", args.ras_window), ("ras_tau", args.ras_tau)) if v is not None}
    tts = Synthesizer(args.model, args.codec_config, args.codec_checkpoint, args.device, **overrides)
    prompt = None
    if args.prompt_wav is not None:
        samples, rate = read_audio(str(args.prompt_wav))
        prompt = (args.prompt_text, resample(to_mono(samples), rate, tts.codec.sample_rate))
    if args.text is not None:
        jobs = [(args.text, args.out)]
    else:
        lines = [line.strip() for line in args.text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        args.out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(line, args.out_dir / f"{i:04d}.wav") for i, line in enumerate(lines, start=1)]
    for line, out in jobs:
        speech = tts.say(line, args.language, args.speaker, prompt)
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, speech.audio, speech.sample_rate)
        print(f"{out}: {len(speech.audio) / speech.sample_rate:.2f} s of audio in {speech.seconds_taken:.2f} s "
              f"(RTF {speech.rtf:.3f}); stopped by {', '.join(speech.stop_reasons)}")


if __name__ == "__main__":
    main()
