"""Tests of the fit_tokenizer stage and the TextTokenizer it produces.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_fit_tokenizer.py -q
"""

import json
import random
from pathlib import Path

import pytest

from stages.config import ConfigError
from stages.fit_tokenizer import fit_tokenizer, main
from stages.common.tables import MANIFEST, write_table
from stages.config.tokenizer import NormalizerConfig
from stages.text.tokenizer import UNK_ID, TextTokenizer
from stages.config.tokenizer import TokenizerConfig

# A tiny real-text fixture: Proverbs (King James Version) and Tang couplets (tang300), both public domain,
# as the demo corpus uses them.
PROVERBS = [
    "To know wisdom and instruction; to perceive the words of understanding;",
    "To receive the instruction of wisdom, justice, and judgment, and equity;",
    "To give subtilty to the simple, to the young man knowledge and discretion.",
    "A wise man will hear, and will increase learning;",
    "My son, hear the instruction of thy father, and forsake not the law of thy mother:",
    "For they shall be an ornament of grace unto thy head, and chains about thy neck.",
    "My son, if sinners entice thee, consent thou not.",
    "Trust in the LORD with all thine heart; and lean not unto thine own understanding.",
    "Honour the LORD with thy substance, and with the firstfruits of all thine increase:",
    "Happy is the man that findeth wisdom, and the man that getteth understanding.",
    "A soft answer turneth away wrath: but grievous words stir up anger.",
    "Pride goeth before destruction, and an haughty spirit before a fall.",
]
COUPLETS = [
    "欣欣此生意，自尔为佳节。",
    "谁知林栖者，闻风坐相悦。",
    "草木有本心，何求美人折？",
    "白日依山尽，黄河入海流。",
    "欲穷千里目，更上一层楼。",
    "床前明月光，疑是地上霜。",
    "举头望明月，低头思故乡。",
    "春眠不觉晓，处处闻啼鸟。",
]
VOICES = {"en": ("awb", "rms", "slt"), "zh": ("cmn", "cmn-f")}  # each sentence read by several voices
EVAL_ONLY = [("en", "The xylophonist played 12 tunes."), ("zh", "龘靐齉爩。")]
SMALL = TokenizerConfig(vocab_size=150, character_coverage=1.0)


def manifest_rows(texts: list[tuple[str, str, str]]) -> list[dict]:
    """Manifest rows for (language, text, split) triples, one row per voice of that language."""
    rows = []
    for i, (language, text, split) in enumerate(texts):
        for voice in VOICES[language]:
            rows.append({"utt_id": f"{voice}-{i:04d}", "speaker": voice, "language": language, "text": text,
                         "split": split, "source": f"{voice}/{i:04d}.wav", "duration": 2.5,
                         "source_sample_rate": 16000, "channels": 1})
    return rows


def corpus() -> list[tuple[str, str, str]]:
    train = [("en", t, "train") for t in PROVERBS] + [("zh", t, "train") for t in COUPLETS]
    train += [("en", "Mr. Smith paid $5 on the 3rd of May, 1984.", "train")]
    return train + [(language, text, "eval") for language, text in EVAL_ONLY]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    write_table(rows, MANIFEST, path)
    return path


@pytest.fixture
def manifest(tmp_path) -> Path:
    return write_manifest(tmp_path / "manifest.parquet", manifest_rows(corpus()))


@pytest.fixture
def fitted(manifest, tmp_path) -> Path:
    fit_tokenizer(manifest, tmp_path / "tokenizer", SMALL)
    return tmp_path / "tokenizer"


def test_writes_the_four_files_and_nothing_else(fitted):
    assert sorted(p.name for p in fitted.iterdir()) == ["normalizer.json", "spm.model", "spm.vocab", "tokenizer.json"]
    assert [p.name for p in fitted.parent.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    vocab = (fitted / "spm.vocab").read_text(encoding="utf-8").splitlines()
    assert vocab[0] == "<unk>\t0"
    assert len(vocab) == TextTokenizer.load(fitted).vocab_size


def test_training_texts_round_trip(fitted):
    tokenizer = TextTokenizer.load(fitted)
    for language, text, split in corpus():
        if split == "train":
            ids = tokenizer.encode(text, language)
            assert UNK_ID not in ids
            assert all(0 <= i < tokenizer.vocab_size for i in ids)
            assert tokenizer.decode(ids) == tokenizer.normalize(text, language)


def test_encode_normalises_with_the_saved_settings(fitted):
    tokenizer = TextTokenizer.load(fitted)
    assert tokenizer.encode("Mr. Smith paid $5.", "en") == tokenizer.encode("mister smith paid five dollars.", "en")
    assert tokenizer.encode("欲穷千里目，更上一层楼。", "zh") == tokenizer.encode("欲穷千里目,更上一层楼.", "zh")


def test_eval_text_is_not_fitted_on(fitted, tmp_path):
    tokenizer = TextTokenizer.load(fitted)
    pieces = [tokenizer.processor.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    assert not any("xylo" in piece or "phonist" in piece for piece in pieces)
    assert tokenizer.encode("龘", "zh")[-1] == UNK_ID  # a character only eval text uses is unknown
    summary = json.loads((fitted / "tokenizer.json").read_text(encoding="utf-8"))
    assert summary["languages"]["zh"]["unk_rate_heldout"] > 0
    assert summary["languages"]["zh"]["unk_rate_train"] == 0.0
    # control: the same sentences marked "train" do reach the vocabulary
    all_train = [(language, text, "train") for language, text, _ in corpus()]
    fit_tokenizer(write_manifest(tmp_path / "all.parquet", manifest_rows(all_train)), tmp_path / "all", SMALL)
    assert UNK_ID not in TextTokenizer.load(tmp_path / "all").encode("龘", "zh")


def test_summary_counts_rows_texts_and_tokens(fitted):
    summary = json.loads((fitted / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer = TextTokenizer.load(fitted)
    assert summary["vocab_size"] == tokenizer.vocab_size
    assert summary["special_ids"] == {"unk": 0, "bos": None, "eos": None, "pad": None}
    assert summary["config"]["vocab_size"] == SMALL.vocab_size
    assert summary["rows_per_split"] == {"train": 3 * 13 + 2 * 8, "valid": 0, "eval": 3 + 2}
    english = summary["languages"]["en"]
    assert (english["train_rows"], english["train_texts"]) == (3 * 13, 13)  # three voices, one text
    lengths = [len(tokenizer.encode(t, "en")) for t in PROVERBS + ["Mr. Smith paid $5 on the 3rd of May, 1984."]]
    stats = english["tokens_per_utterance"]
    assert (stats["min"], stats["max"]) == (min(lengths), max(lengths))
    assert stats["mean"] == pytest.approx(sum(lengths) / len(lengths), abs=1e-3)
    normalizer = json.loads((fitted / "normalizer.json").read_text(encoding="utf-8"))
    assert normalizer["settings"] == {"lowercase": True, "verbalize_numbers": True, "expand_abbreviations": True}
    assert set(normalizer["libraries"]) == {"unicode", "num2words", "cn2an"}


def test_refitting_gives_byte_identical_files_whatever_the_row_order(manifest, tmp_path):
    rows = manifest_rows(corpus())
    random.Random(0).shuffle(rows)
    shuffled = write_manifest(tmp_path / "shuffled.parquet", rows)
    fit_tokenizer(manifest, tmp_path / "a", SMALL)
    fit_tokenizer(manifest, tmp_path / "b", SMALL)
    fit_tokenizer(shuffled, tmp_path / "c", SMALL)
    for name in ("spm.model", "spm.vocab", "normalizer.json", "tokenizer.json"):
        first = (tmp_path / "a" / name).read_bytes()
        assert first == (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name


@pytest.mark.parametrize("model_type", ["unigram", "bpe", "char"])
def test_every_model_type_fits_and_round_trips(manifest, tmp_path, model_type):
    fit_tokenizer(manifest, tmp_path / model_type, TokenizerConfig(model_type=model_type, vocab_size=150,
                                                                    character_coverage=1.0))
    tokenizer = TextTokenizer.load(tmp_path / model_type)
    text = "A wise man will hear, and will increase learning;"
    assert tokenizer.decode(tokenizer.encode(text, "en")) == tokenizer.normalize(text, "en")


def test_a_vocabulary_larger_than_the_corpus_supports_is_capped(manifest, tmp_path):
    fit_tokenizer(manifest, tmp_path / "big", TokenizerConfig(vocab_size=50_000))
    summary = json.loads((tmp_path / "big" / "tokenizer.json").read_text(encoding="utf-8"))
    assert 0 < summary["vocab_size"] < 50_000


def test_a_vocabulary_smaller_than_the_characters_is_a_clear_error(manifest, tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size 20 is too small: .* set vocab_size to at least \d+"):
        fit_tokenizer(manifest, tmp_path / "tiny", TokenizerConfig(vocab_size=20))
    assert not (tmp_path / "tiny").exists()


def test_empty_train_split_is_a_clear_error(tmp_path):
    manifest = write_manifest(tmp_path / "m.parquet", manifest_rows([("en", t, "eval") for t in PROVERBS]))
    with pytest.raises(ValueError, match="no training text.*'train': 0.*'eval': 36"):
        fit_tokenizer(manifest, tmp_path / "tokenizer", SMALL)
    assert not (tmp_path / "tokenizer").exists()


def test_a_language_the_normaliser_lacks_is_an_error(tmp_path):
    rows = manifest_rows(corpus())
    rows[0]["language"] = "fr"
    with pytest.raises(ValueError, match="language 'fr'"):
        fit_tokenizer(write_manifest(tmp_path / "m.parquet", rows), tmp_path / "tokenizer", SMALL)


def test_an_existing_output_is_replaced_whole(manifest, tmp_path):
    out = tmp_path / "tokenizer"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    fit_tokenizer(manifest, out, SMALL)
    assert not (out / "stale.txt").exists()
    assert (out / "spm.model").exists()


def test_saved_normaliser_settings_are_used_when_loading(manifest, tmp_path):
    cfg = TokenizerConfig(vocab_size=150, character_coverage=1.0, normalizer=NormalizerConfig(lowercase=False))
    fit_tokenizer(manifest, tmp_path / "cased", cfg)
    tokenizer = TextTokenizer.load(tmp_path / "cased")
    assert tokenizer.normalizer == NormalizerConfig(lowercase=False)
    assert tokenizer.normalize("Trust the LORD", "en") == "Trust the LORD"


def test_loading_warns_when_normaliser_libraries_changed(fitted):
    path = fitted / "normalizer.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["libraries"]["num2words"] = "0.0.1"
    path.write_text(json.dumps(saved), encoding="utf-8")
    with pytest.warns(UserWarning, match="num2words 0.0.1 ->"):
        TextTokenizer.load(fitted)


def test_command_line(manifest, tmp_path, capsys):
    main(["--manifest", str(manifest), "--out-dir", str(tmp_path / "cli"),
          "--config-json", '{"vocab_size": 150, "character_coverage": 1.0, "normalizer": {"lowercase": true}}'])
    assert "pieces from 55 training rows" in capsys.readouterr().out
    assert TextTokenizer.load(tmp_path / "cli").vocab_size > 0
    with pytest.raises(ConfigError, match="vocab_sise"):
        main(["--manifest", str(manifest), "--out-dir", str(tmp_path / "cli"), "--config-json", '{"vocab_sise": 9}'])
