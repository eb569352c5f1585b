"""Inference with a trained model: the `Synthesizer` that the synthesize stage, `minimind-tts` and a server share."""

from stages.runtime.synthesizer import CodecMismatch, Speech, Spoken, Synthesizer

__all__ = ["CodecMismatch", "Speech", "Spoken", "Synthesizer"]
