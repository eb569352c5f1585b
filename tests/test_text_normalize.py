"""Tests of the English and Mandarin text normaliser.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_text_normalize.py -q
"""

import pytest

from stages.config import from_dict
from stages.text.normalize import library_versions, normalize
from stages.config.tokenizer import NormalizerConfig


@pytest.mark.parametrize("text, spoken", [
    # numbers, with and without thousands separators
    ("I have 3 cats.", "i have three cats."),
    ("1,234,567 people", "one million two hundred and thirty four thousand five hundred and sixty seven people"),
    ("page 42, line 7", "page forty two, line seven"),
    ("agent 007", "agent zero zero seven"),
    ("-5 degrees", "minus five degrees"),
    ("\u22125 degrees", "minus five degrees"),                       # the Unicode minus sign
    ("pages 10-20", "pages ten to twenty"),
    ("1914\u20131918", "nineteen fourteen to nineteen eighteen"),
    # years and decades
    ("In 1984 it rained.", "in nineteen eighty four it rained."),
    ("in 1905", "in nineteen oh five"),
    ("by 2005", "by two thousand and five"),
    ("the 1990s", "the nineteen nineties"),
    ("the 1800s", "the eighteen hundreds"),
    # ordinals
    ("the 21st of May", "the twenty first of may"),
    ("3rd place, 101st time", "third place, one hundred and first time"),
    # currency
    ("$5.50", "five dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$0.01", "one cent"),
    ("£2 and £1.01", "two pounds and one pound and one penny"),
    ("€3.75", "three euros and seventy five cents"),
    ("5 €", "five euros"),
    ("$2.5 million", "two point five million dollars"),
    ("$1,000,000,", "one million dollars,"),
    # decimals, percentages, times, fractions, symbols
    ("3.14", "three point one four"),
    ("45% and 2.5%", "forty five percent and two point five percent"),
    ("at 10:05", "at ten oh five"),
    ("at 7:00", "at seven o'clock"),
    ("1/2 and 3/4 and 2/3", "one half and three quarters and two thirds"),
    ("\u00bd cup", "one half cup"),
    ("Smith & Sons", "smith and sons"),
    ("A4 paper", "a four paper"),
])
def test_english_numbers_are_read_as_words(text, spoken):
    assert normalize(text, "en") == spoken


@pytest.mark.parametrize("text, spoken", [
    ("Mr. and Mrs. Smith met Ms. Jones.", "mister and missus smith met miz jones."),
    ("Dr. Watson", "doctor watson"),
    ("Mulholland Dr.", "mulholland drive."),
    ("St. Paul lived on Baker St. in London.", "saint paul lived on baker street in london."),
    ("apples, pears, etc. Then more.", "apples, pears, et cetera. then more."),
    ("apples, pears, etc., and more", "apples, pears, et cetera, and more"),
    ("fruit, e.g. apples, i.e. food", "fruit, for example apples, that is food"),
    ("Ali vs. Frazier", "ali versus frazier"),
    ("No. 5 and no one", "number five and no one"),
    ("at 5 p.m. sharp", "at five p m sharp"),
    ("at 5p.m. sharp", "at five p m sharp"),
    ("Prof. Capt. Gen.", "professor captain general"),
])
def test_english_abbreviations_are_expanded(text, spoken):
    assert normalize(text, "en") == spoken


@pytest.mark.parametrize("text, spoken", [
    ("\ufb01ne", "fine"),                                             # ligature (NFKC)
    ("\uff21\uff22\uff23 \uff11\uff12", "abc twelve"),                # full-width letters and digits (NFKC)
    ("a\u00a0b\u200bc", "a bc"),                                      # no-break space, zero-width space
    ("\u201cHi,\u201d she said, \u2018don\u2019t\u2019", "\"hi,\" she said, 'don't'"),
    ("wait\u2014what", "wait - what"),
    ("so -- then", "so - then"),
    ("well\u2026 and....", "well... and..."),
    ("  spaced   out \n text ,  ok ", "spaced out text, ok"),
    ("well-known", "well-known"),
])
def test_english_characters_punctuation_and_spaces(text, spoken):
    assert normalize(text, "en") == spoken


def test_english_options_switch_each_rewrite_off():
    text = "Mr. Smith paid $5."
    assert normalize(text, "en", NormalizerConfig(lowercase=False)) == "mister Smith paid five dollars."
    assert normalize(text, "en", NormalizerConfig(verbalize_numbers=False)) == "mister smith paid $5."
    assert normalize(text, "en", NormalizerConfig(expand_abbreviations=False)) == "mr. smith paid five dollars."


@pytest.mark.parametrize("text, spoken", [
    ("我有2个苹果", "我有二个苹果"),
    ("3.5元", "三点五元"),
    ("50%的人", "百分之五十的人"),
    ("2024年", "二零二四年"),
    ("1,000人", "一千人"),
    ("约1000000人", "约一百万人"),
    ("2024-01-05", "二零二四年一月五日"),
    ("01月", "一月"),
    ("08:05出发,12:00到", "八点零五分出发,十二点到"),
    ("¥1,000", "一千元"),
    ("3-5个", "三至五个"),
    ("-3度", "负三度"),
    ("电话007", "电话零零七"),
    ("1/2", "二分之一"),
    ("\uff12\uff10\uff12\uff14年", "二零二四年"),                       # full-width digits
])
def test_chinese_numerals(text, spoken):
    assert normalize(text, "zh") == spoken


@pytest.mark.parametrize("text, spoken", [
    ("兰叶春葳蕤，桂华秋皎洁。", "兰叶春葳蕤,桂华秋皎洁."),
    ("何求美人折？", "何求美人折?"),
    ("他说：“你好！”", '他说:"你好!"'),
    ("《感遇・其一》 兰叶", '"感遇其一"兰叶'),
    ("春、夏；秋", "春,夏;秋"),
    ("好……走吧", "好...走吧"),
    ("走——吧", "走 - 吧"),
    ("【注】", "(注)"),
    ("白日 依山尽", "白日依山尽"),                                      # no spaces inside Chinese text
    ("我用 GPS 导航", "我用 gps 导航"),                                 # Latin words keep their spaces
    ("學習漢字", "學習漢字"),                                            # characters kept as written
])
def test_chinese_punctuation_and_characters(text, spoken):
    assert normalize(text, "zh") == spoken


@pytest.mark.parametrize("text, language", [
    ("Dr. Smith paid $5.50 on March 3rd, 1984 \u2014 e.g. 45% of it, etc.", "en"),
    ("\u201cWait\u2026\u201d at 10:05 p.m., No. 7 vs. 1/2.", "en"),
    ("２０２４年１月５日，08:05出发，价格¥1,000。", "zh"),
    ("《感遇・其一》 兰叶春葳蕤，桂华秋皎洁……", "zh"),
])
def test_normalising_twice_changes_nothing(text, language):
    once = normalize(text, language)
    assert normalize(once, language) == once


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="'fr'"):
        normalize("bonjour", "fr")


def test_config_rejects_unknown_keys_and_records_library_versions():
    assert from_dict(NormalizerConfig, {"lowercase": False}).lowercase is False
    with pytest.raises(ValueError, match="lowercse"):
        from_dict(NormalizerConfig, {"lowercse": False})
    assert set(library_versions()) == {"unicode", "num2words", "cn2an"}
