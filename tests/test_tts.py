"""Text -> WAV: sentence splitting, streaming decode with overlap, and the minimind-tts command end to end."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import CODEC_CKPT, CODEC_YAML
from stages.codec import codec_id, load_codec
from stages.codec.streaming import StreamingDecoder
from stages.text.sentences import split_sentences
from stages.runtime import CodecMismatch, Synthesizer
from stages.text.normalize import detect_language
from stages.tts import main


@pytest.fixture(scope="module")
def codec():
    return load_codec(CODEC_YAML, CODEC_CKPT)


def test_sentences_split_at_sentence_ends_in_both_scripts():
    assert split_sentences("One. Two!  Three?") == ["One.", "Two!", "Three?"]
    assert split_sentences("白日依山尽。黄河入海流！") == ["白日依山尽。", "黄河入海流！"]
    assert split_sentences("  ") == []
    long = "word " * 100
    parts = split_sentences(long, max_chars=60)
    assert all(len(p) <= 60 for p in parts) and " ".join(parts).split() == long.split()


def test_language_detection():
    assert detect_language("Hello there") == "en" and detect_language("你好 there") == "zh"
    # Extension A and the compatibility ideographs are Mandarin text too, as the normaliser treats them
    assert detect_language("\u3400") == detect_language("\uf900") == "zh"


def test_a_model_refuses_a_codec_it_was_not_trained_on(model_dir, codec, tmp_path):
    import json
    import shutil

    for recorded, accepted in ((codec_id(codec), True), ("0123456789abcdef", False)):
        folder = tmp_path / recorded
        shutil.copytree(model_dir, folder)
        (folder / "codec.json").write_text(json.dumps({"codec_id": recorded}))
        if accepted:
            Synthesizer(folder, CODEC_YAML, CODEC_CKPT)
        else:
            with pytest.raises(CodecMismatch, match="0123456789abcdef.*noise"):
                Synthesizer(folder, CODEC_YAML, CODEC_CKPT)


def test_streaming_decode_matches_whole_decode_without_clicks(codec):
    torch.manual_seed(1)
    codes = torch.randint(0, 4096, (1, 90))
    with torch.inference_mode():
        whole = codec.decode(codes)[0].numpy()
    decoder = StreamingDecoder(codec)
    pieces = [decoder.push(codes[0, i:i + 20].tolist()) for i in range(0, 90, 20)] + [decoder.finish()]
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(whole) == 90 * codec.hop_length
    # WavTokenizer's decoder normalises and attends over the whole sequence, so no window can equal the whole
    # decode; what streaming must give is continuity at the seams and far less error than independent chunks.
    error = np.sqrt(np.mean((streamed - whole) ** 2)) / np.sqrt(np.mean(whole ** 2))
    # No seam may jump more than the whole decode does anywhere.
    assert np.abs(np.diff(streamed)).max() <= 1.5 * np.abs(np.diff(whole)).max()
    naive = np.concatenate([codec.decode(codes[:, i:i + 20])[0].detach().numpy() for i in range(0, 90, 20)])
    naive_error = np.sqrt(np.mean((naive - whole) ** 2)) / np.sqrt(np.mean(whole ** 2))
    assert error < naive_error / 2, "overlap decoding must beat decoding chunks independently"


def test_say_speaks_every_sentence_and_reports_why_it_stopped(model_dir):
    tts = Synthesizer(model_dir, CODEC_YAML, CODEC_CKPT, seed=3)
    speech = tts.say("A soft answer turneth away wrath. Pride goeth before destruction.", speaker="awb")
    assert speech.sentences == ["A soft answer turneth away wrath.", "Pride goeth before destruction."]
    assert speech.stop_reasons and set(speech.stop_reasons) <= {"eos", "max_length"}
    assert speech.audio.dtype == np.float32 and len(speech.audio) > 0 and speech.sample_rate == 24000
    assert speech.rtf > 0
    again = Synthesizer(model_dir, CODEC_YAML, CODEC_CKPT, seed=3).say(
        "A soft answer turneth away wrath. Pride goeth before destruction.", speaker="awb")
    np.testing.assert_array_equal(speech.audio, again.audio)
    with pytest.raises(ValueError, match="nothing to say"):
        tts.say("   ")


def test_the_lm_loads_in_bf16_beside_an_fp32_codec(model_dir):
    tts = Synthesizer(model_dir, CODEC_YAML, CODEC_CKPT, dtype=torch.bfloat16)
    assert tts.model.embed.weight.dtype == torch.bfloat16
    speech = tts.say("Pride goeth before destruction.", speaker="rms")
    assert speech.audio.dtype == np.float32 and len(speech.audio) > 0 and np.isfinite(speech.audio).all()


@pytest.mark.slow
def test_a_compiled_decode_step_says_what_eager_decoding_says(model_dir):
    """Synthesizer(compile=True) compiles at load (inductor); sampling draws the same codes as eager decoding."""
    text = "A soft answer turneth away wrath. Pride goeth before destruction."
    eager = Synthesizer(model_dir, CODEC_YAML, CODEC_CKPT, seed=3, dtype=None)
    compiled = Synthesizer(model_dir, CODEC_YAML, CODEC_CKPT, seed=3, dtype=None, compile=True)
    assert compiled.decode_step is not None
    np.testing.assert_array_equal(compiled.say(text, speaker="awb").audio, eager.say(text, speaker="awb").audio)
    streamed = np.concatenate(list(compiled.say_streaming("Pride goeth before destruction.", speaker="rms")))
    np.testing.assert_array_equal(
        streamed, np.concatenate(list(eager.say_streaming("Pride goeth before destruction.", speaker="rms"))))


def test_voice_prompt_and_streaming(model_dir):
    tts = Synthesizer(model_dir, CODEC_YAML, CODEC_CKPT)
    prompt_audio = np.sin(np.arange(24000, dtype=np.float32) / 20) * 0.2
    speech = tts.say("Pride goeth before destruction.", prompt=("a soft answer turneth away wrath", prompt_audio))
    assert len(speech.audio) > 0
    chunks = list(tts.say_streaming("白日依山尽，黄河入海流。"))
    assert sum(len(c) for c in chunks) > 0


def test_command_line_speaks_with_an_int8_lm(model_dir, tmp_path, capsys):
    main(["--model", str(model_dir), "--codec-config", str(CODEC_YAML), "--codec-checkpoint", str(CODEC_CKPT),
          "--quantize", "int8", "--text", "a soft answer turneth away wrath", "--out", str(tmp_path / "say.wav")])
    assert "RTF" in capsys.readouterr().out
    audio, rate = sf.read(tmp_path / "say.wav")
    assert rate == 24000 and len(audio) > 0


def test_command_line_writes_wavs_and_prints_rtf(model_dir, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("a soft answer turneth away wrath\n\n白日依山尽，黄河入海流。\n", encoding="utf-8")
    main(["--model", str(model_dir), "--codec-config", str(CODEC_YAML), "--codec-checkpoint", str(CODEC_CKPT),
          "--text-file", str(lines), "--out-dir", str(tmp_path / "wavs")])
    printed = capsys.readouterr().out
    assert printed.count("RTF") == 2
    for name in ("0001.wav", "0002.wav"):
        audio, rate = sf.read(tmp_path / "wavs" / name)
        assert rate == 24000 and len(audio) > 0
