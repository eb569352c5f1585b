"""Text to speech with a trained MiniMind-TTS model and its codec (the `minimind-tts` command).

    minimind-tts --model results/demo/sft/model --codec-config results/demo/codec/codec.yaml \
        --codec-checkpoint results/demo/codec/codec.ckpt --text "Wisdom is better than rubies." --out say.wav
    minimind-tts ... --text-file lines.txt --out-dir wavs/ [--speaker rms] [--prompt-wav ref.wav --prompt-text "..."]
    minimind-tts serve --model ... --codec-config ... --codec-checkpoint ... [--port 8000]   (stages.serve)

Long text is split at sentence boundaries; the sentences are generated as one batch (the LM gives the same
codes for a sentence alone or in a batch), decoded by the codec and joined with a short pause. Prints the
real-time factor (processing seconds per second of audio) and why each sentence stopped. The work is
stages.runtime.Synthesizer's; this module is its command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import soundfile as sf

from stages.common.audio import read_audio, resample, to_mono
from stages.runtime.arguments import add_synthesis_arguments, load_synthesizer


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        from stages.serve.cli import main as serve  # FastAPI and uvicorn load only for serving

        serve(argv[1:])
        return
    parser = argparse.ArgumentParser(prog="minimind-tts", description=__doc__.split("\n\n")[0],
                                     epilog="minimind-tts serve --help: the HTTP server (OpenAI speech endpoint)")
    add_synthesis_arguments(parser)
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="what to say")
    text.add_argument("--text-file", type=Path, help="one utterance per line")
    parser.add_argument("--out", type=Path, help="WAV file (with --text)")
    parser.add_argument("--out-dir", type=Path, help="folder for 0001.wav, 0002.wav, ... (with --text-file)")
    parser.add_argument("--language", default="auto", choices=["auto", "en", "zh"])
    parser.add_argument("--speaker", help="speaker token, for models trained with speaker conditioning")
    parser.add_argument("--prompt-wav", type=Path, help="voice to continue (zero-shot), with --prompt-text")
    parser.add_argument("--prompt-text", help="transcript of --prompt-wav")
    args = parser.parse_args(argv)
    if (args.prompt_wav is None) != (args.prompt_text is None):
        parser.error("--prompt-wav and --prompt-text go together")
    if args.text is not None and args.out is None:
        parser.error("--text needs --out")
    if args.text_file is not None and args.out_dir is None:
        parser.error("--text-file needs --out-dir")
    tts = load_synthesizer(args)
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
