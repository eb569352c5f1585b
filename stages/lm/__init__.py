"""The MiniMind-TTS language model: token layout, decoder, decoding and export.

    python -m stages.lm.size configs/model/26m.yaml --n-text 2000      # a preset's parameter count

vocab.py lays out the unified vocabulary and the aligned one-stream sequences; config.py holds the model
and generation settings; model.py is the decoder and size.py its parameter count; generate.py decodes
speech codes; export.py saves, loads and exports to transformers.
"""
