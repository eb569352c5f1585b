"""Text normaliser for English and Mandarin: the model reads what a speaker would say, not what was typed.

    python -m stages.text.normalize en "Dr. Smith paid $5.50 on March 3rd, 1984."   # prints the normalised text

Both languages: Unicode NFKC, then one spelling for each quote, dash, ellipsis and space. English: numbers,
ordinals, years, decades, times, fractions, decimals, percentages and $/£/€ amounts become words (num2words),
common abbreviations are expanded, and the result is lower-cased. Mandarin: full-width and CJK punctuation
become their ASCII twins, Arabic numerals become Chinese numerals (cn2an), characters are kept as written.
The settings are saved with the fitted tokenizer, so training and inference normalise identically.
"""

from __future__ import annotations

import re
import sys
import unicodedata

import cn2an
from num2words import num2words

from stages.config.tokenizer import NormalizerConfig

LANGUAGES: tuple[str, ...] = ("en", "zh")


# ---------------------------------------------------------------- shared: characters, punctuation, spaces

_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff\u00ad\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SINGLE_QUOTES = re.compile(r"[\u2018\u2019\u201a\u201b\u2032\u2039\u203a`]")
_DOUBLE_QUOTES = re.compile(r"[\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb]")
_HYPHENS = re.compile(r"[\u2010\u2011\u2043\u2212]")  # word-joining hyphens and the minus sign: "-"
_DASHES = re.compile(r"\s*(?:[\u2012-\u2015\u2e3a\u2e3b]+|--+)\s*")  # a dash is a pause
_DIGIT_RANGE = re.compile(r"(?<=\d)\s*[\u2012\u2013\u2014~]\s*(?=\d)")
_ELLIPSIS = re.compile(r"\.{3,}")


def _common_cleanup(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # full-width forms, ligatures, '…' -> '...', NBSP -> space
    text = _INVISIBLE.sub("", text)
    text = _SINGLE_QUOTES.sub("'", text)
    text = _DOUBLE_QUOTES.sub('"', text)
    return _HYPHENS.sub("-", text)


def _final_spacing(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" (?=[,.;:!?)])", "", text)
    return _ELLIPSIS.sub("...", text)


# ---------------------------------------------------------------- English

def _words(n: int) -> str:
    # num2words writes "twenty-one" and "one million, two hundred": hyphens and commas inside a number
    # would read as extra pieces and pauses, so numbers become plain space-separated words.
    return num2words(n, lang="en").replace("-", " ").replace(",", "")


def _digits(s: str) -> str:
    return " ".join(_words(int(d)) for d in s)


def _ordinal_words(n: int) -> str:
    return num2words(n, lang="en", to="ordinal").replace("-", " ").replace(",", "")


def _year(n: int) -> str:
    return num2words(n, lang="en", to="year").replace("-", " ")


def _integer(s: str) -> str:
    s = s.replace(",", "")
    if len(s) > 1 and s.startswith("0") or len(s) > 15:  # "007", serial-like strings: digit by digit
        return _digits(s)
    return _words(int(s))


def _decimal(integer: str, fraction: str | None) -> str:
    return _integer(integer) + (f" point {_digits(fraction)}" if fraction else "")


def _plural(word: str, n_text: str) -> str:
    return word if n_text == "one" else word + "s"


_CURRENCIES = {"$": ("dollar", "cent", "cents"), "£": ("pound", "penny", "pence"), "€": ("euro", "cent", "cents")}
_INTEGER = r"(\d{1,3}(?:,\d{3})+(?!\d)|\d+)"  # separators only in threes: "5," and "7,4828" keep their comma
_AMOUNT = _INTEGER + r"(?:\.(\d+))?(?:\s?(thousand|million|billion|trillion)\b)?"
_MONEY_BEFORE = re.compile(r"([$£€])\s?" + _AMOUNT)
_MONEY_AFTER = re.compile(r"(?<![\w.])" + _AMOUNT + r"\s?([$£€])")


def _money(symbol: str, integer: str, fraction: str | None, scale: str | None) -> str:
    unit, minor_one, minor_many = _CURRENCIES[symbol]
    if scale or (fraction and len(fraction) > 2):  # "$2.5 million", "$1.234": a quantity, not a price
        amount = _decimal(integer, fraction) + (f" {scale}" if scale else "")
        return f"{amount} {unit}s"
    major = _integer(integer)
    minor = int((fraction or "0").ljust(2, "0"))
    minor_text = f"{_words(minor)} {minor_one if minor == 1 else minor_many}"
    if major == "zero" and minor:
        return minor_text
    major_text = f"{major} {_plural(unit, major)}"
    return f"{major_text} and {minor_text}" if minor else major_text


_FRACTION_NAMES = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def _fraction(m: re.Match) -> str:
    numerator, denominator = int(m[1]), int(m[2])
    if denominator == 0:
        return f"{_words(numerator)} over zero"
    ordinal = _ordinal_words(denominator)
    one, many = _FRACTION_NAMES.get(denominator, (ordinal, ordinal + "s"))
    return f"{_words(numerator)} {one if numerator == 1 else many}"


def _time(m: re.Match) -> str:
    hour, minute = int(m[1]), int(m[2])
    if minute == 0:
        return f"{_words(hour)} o'clock"
    return f"{_words(hour)} {'oh ' if minute < 10 else ''}{_words(minute)}"


def _decade(m: re.Match) -> str:
    words = _year(int(m[1])).split()
    last = words[-1]
    words[-1] = last[:-1] + "ies" if last.endswith("y") else last + "s"  # eighty -> eighties, hundred -> hundreds
    return " ".join(words)


def _plain_number(m: re.Match) -> str:
    integer, fraction = m[1], m[2]
    if fraction is None and "," not in integer and len(integer) == 4 and 1000 <= int(integer) <= 2099:
        words = _year(int(integer))  # a bare four-digit number in prose is nearly always a year
    else:
        words = _decimal(integer, fraction)
    # "A4", "B12": a number glued to letters still needs a space on each side once it is words.
    before = " " if m.start() > 0 and m.string[m.start() - 1].isalpha() else ""
    after = " " if m.end() < len(m.string) and m.string[m.end()].isalpha() else ""
    return before + words + after


def _verbalize_english_numbers(text: str) -> str:
    text = _MONEY_BEFORE.sub(lambda m: _money(m[1], m[2], m[3], m[4]), text)
    text = _MONEY_AFTER.sub(lambda m: _money(m[4], m[1], m[2], m[3]), text)
    text = re.sub(_INTEGER + r"(\.\d+)?\s?%", r"\1\2 percent", text)
    text = re.sub(r"\b([01]?\d|2[0-4]):([0-5]\d)\b", _time, text)
    text = re.sub(r"\b(\d+)\s?[/\u2044]\s?(\d+)\b", _fraction, text)
    text = re.sub(r"\b(\d{3}0)'?s\b", _decade, text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: _ordinal_words(int(m[1])), text)
    text = re.sub(r"(?<=\d)-(?=\d)", " to ", text)  # 10-20 is a range
    text = re.sub(r"(?<![\w.])-(?=\d)", "minus ", text)
    text = re.sub(r"(?<!\d)" + _INTEGER + r"(?:\.(\d+))?", _plain_number, text)
    return text.replace("&", " and ")


# (pattern, expansion, may end a sentence). Titles precede a name and never end one; "St." and "Dr." are
# "saint"/"doctor" before a capitalised word and "street"/"drive" otherwise.
_ABBREVIATIONS: tuple[tuple[str, str, bool], ...] = (
    (r"Mr\.", "mister", False), (r"Mrs\.", "missus", False), (r"Ms\.", "miz", False),
    (r"Dr\.(?=\s+[A-Z])", "doctor", False), (r"Dr\.", "drive", True),
    (r"St\.(?=\s+[A-Z])", "saint", False), (r"St\.", "street", True),
    (r"Prof\.", "professor", False), (r"Rev\.", "reverend", False), (r"Capt\.", "captain", False),
    (r"Gen\.", "general", False), (r"Col\.", "colonel", False), (r"Lt\.", "lieutenant", False),
    (r"Sgt\.", "sergeant", False), (r"Mt\.", "mount", False), (r"Ft\.", "fort", False),
    (r"Jr\.", "junior", True), (r"Sr\.", "senior", True),
    (r"No\.(?=\s*\d)", "number", False), (r"approx\.", "approximately", False),
    (r"etc\.", "et cetera", True), (r"e\.g\.", "for example", False), (r"i\.e\.", "that is", False),
    (r"vs\.?(?=\s)", "versus", False), (r"a\.m\.", "a m", True), (r"p\.m\.", "p m", True),
)
_SENTENCE_END = re.compile(r"\s*$|\s+[\"'(]?[A-Z]")


def _expand_english_abbreviations(text: str) -> str:
    for pattern, expansion, may_end_sentence in _ABBREVIATIONS:
        def replace(m: re.Match, expansion: str = expansion, may_end: bool = may_end_sentence) -> str:
            # "... and so on, etc." keeps its full stop: the period was doing two jobs.
            ends = may_end and _SENTENCE_END.match(m.string, m.end()) is not None
            before = " " if m.start() > 0 and m.string[m.start() - 1].isdigit() else ""  # 5p.m.
            after = " " if m.end() < len(m.string) and m.string[m.end()].isalnum() else ""  # e.g.apples
            return before + expansion + ("." if ends else "") + after
        text = re.sub(r"(?<![A-Za-z.])" + pattern, replace, text, flags=re.IGNORECASE if pattern[0].islower() else 0)
    return text


def _normalize_english(text: str, cfg: NormalizerConfig) -> str:
    if cfg.verbalize_numbers:
        text = _DIGIT_RANGE.sub(" to ", text)  # 1914–1918: an en dash between numbers is a range, not a pause
    text = _DASHES.sub(" - ", text)
    if cfg.expand_abbreviations:
        text = _expand_english_abbreviations(text)
    if cfg.verbalize_numbers:
        text = _verbalize_english_numbers(text)
    return text.lower() if cfg.lowercase else text


# ---------------------------------------------------------------- Mandarin

# CJK ideographs: Extension A, the Unified block and the compatibility block.
CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_ZH_PUNCTUATION = str.maketrans({
    "。": ".", "｡": ".", "、": ",", "､": ",", "・": " ", "·": " ", "〜": "~",
    "《": '"', "》": '"', "〈": '"', "〉": '"', "「": '"', "」": '"', "『": '"', "』": '"',
    "【": "(", "】": ")", "〔": "(", "〕": ")", "〖": "(", "〗": ")",
})
_ZH_DIGITS = str.maketrans("0123456789", "零一二三四五六七八九")


def _chinese_time(m: re.Match) -> str:
    hour, minute = int(m[1]), m[2]
    if minute == "00":
        return f"{hour}点"
    return f"{hour}点{'零' if minute[0] == '0' else ''}{int(minute)}分"  # 8:05 is 八点零五分


def _verbalize_chinese_numbers(text: str) -> str:
    # cn2an reads most forms well (年份 digit by digit, 百分之, 分之, 点, 负); these rewrites cover what it
    # misreads: thousands separators, ISO dates, clock times, ¥ amounts, ranges and leading zeros.
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    text = re.sub(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)",
                  lambda m: f"{m[1]}年{int(m[2])}月{int(m[3])}日", text)
    text = re.sub(r"(?<!\d)([01]?\d|2[0-4]):([0-5]\d)(?!\d)", _chinese_time, text)
    text = re.sub(r"¥\s?(\d+(?:\.\d+)?)", r"\1元", text)
    text = re.sub(r"(?<=\d)\s*[-~]\s*(?=\d)", "至", text)
    text = re.sub(r"(?<=[A-Za-z])-(?=\d)", " ", text)  # COVID-19: a hyphen, not a minus sign
    text = re.sub(r"(?<!\d)0(\d)(?=[月日号时点分秒])", r"\1", text)  # 01月 is 一月
    text = re.sub(r"(?<![\d.])0\d+(?![\d.])", lambda m: m[0].translate(_ZH_DIGITS), text)  # 007 is 零零七
    return cn2an.transform(text, "an2cn")


def _normalize_chinese(text: str, cfg: NormalizerConfig) -> str:
    text = re.sub(r"[\u2012-\u2015]+", " - ", text)  # before the numbers, so 3–5 is seen as a range
    if cfg.verbalize_numbers:
        text = _verbalize_chinese_numbers(text)
    text = text.translate(_ZH_PUNCTUATION)
    text = _DASHES.sub(" - ", text)
    # Chinese is written without spaces: drop any that sit next to a character or a punctuation mark.
    text = re.sub(rf"(?<={CJK})\s+(?={CJK})", "", text)
    text = re.sub(rf"(?<=[,.;:!?\"]) +(?={CJK})|(?<={CJK}) +(?=[\"])", "", text)
    return text.lower() if cfg.lowercase else text


# ---------------------------------------------------------------- entry point

def normalize(text: str, language: str, cfg: NormalizerConfig = NormalizerConfig()) -> str:
    """The spoken form of `text` in `language` ("en" or "zh")."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}: the text normaliser knows {', '.join(LANGUAGES)}")
    text = _common_cleanup(text)
    text = _normalize_english(text, cfg) if language == "en" else _normalize_chinese(text, cfg)
    return _final_spacing(text)


def library_versions() -> dict[str, str]:
    """Versions whose behaviour the normalised text depends on (NFKC tables change with Unicode versions)."""
    from importlib.metadata import version

    return {"unicode": unicodedata.unidata_version, "num2words": version("num2words"), "cn2an": version("cn2an")}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit('usage: python -m stages.text.normalize {en|zh} "text"')
    print(normalize(argv[1], argv[0]))


if __name__ == "__main__":
    main()


def detect_language(text: str) -> str:
    """`zh` for text with any CJK ideograph, else `en`: the two languages the normaliser knows."""
    return "zh" if re.search(CJK, text) else "en"
