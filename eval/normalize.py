"""The one answer normalisation behind every strict and lenient text score (docs/EVAL.md).

:func:`normalize_answer` applies, in order:

1. Unicode NFKC (so ``m²`` reads ``m2``) and lower case;
2. thousands separators removed (``1,000`` → ``1000``) and apostrophes dropped (``can't`` → ``cant``);
3. every other punctuation mark becomes a space, except a ``.`` between two digits (``2.5``);
4. the articles ``a``, ``an`` and ``the`` are dropped;
5. number words become digits (``twenty one`` → ``21``, ``a hundred`` is not a number);
6. yes/no synonyms become ``yes`` / ``no`` (``yeah``, ``true``, ``correct`` …);
7. areas are written as one token (``6048 square meters`` → ``6048m2``);
8. whitespace is collapsed.

A strict match is equality of the normalised texts; a lenient match is the normalised
reference appearing in the normalised prediction as whole words while the prediction names no
other candidate answer of the question's type (both ``yes`` and ``no``; a number the reference
does not hold; another answer of the same type, such as a second scene class). An empty
prediction never matches anything.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "normalize_answer",
    "answer_tokens",
    "exact_match",
    "lenient_match",
    "AnswerPool",
    "named_answers",
    "names_another_answer",
    "read_number",
    "normalize_label",
    "choice_options",
    "choice_letter",
]

ARTICLES = frozenset({"a", "an", "the"})
YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "affirmative"})
NO_WORDS = frozenset({"no", "nope", "false", "incorrect", "negative"})

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_APOSTROPHE_RE = re.compile(r"['\u2019`]")
_DECIMAL_POINT = "\x00"
_DECIMAL_RE = re.compile(r"(?<=\d)\.(?=\d)")
_NUMBER_RE = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_NUMBER_TOKEN_RE = re.compile(r"^([+-]?\d+(?:\.\d+)?)(?:m2)?$")  # a number, or an area
_AREA_WORDS = (
    ("square", "meters"),
    ("square", "metres"),
    ("square", "meter"),
    ("square", "metre"),
    ("sq", "m"),
)


def _strip_punctuation(text: str) -> str:
    text = _DECIMAL_RE.sub(_DECIMAL_POINT, text)
    out = []
    for ch in text:
        if ch == _DECIMAL_POINT:
            out.append(".")
        elif unicodedata.category(ch)[0] in "PS":  # punctuation and symbols
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _words_to_numbers(tokens: list[str]) -> list[str]:
    """Replace runs of number words by their value (``twenty one`` → ``21``, ``one two`` → ``1 2``)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in _UNITS and tokens[i] not in _TENS:
            out.append(tokens[i])
            i += 1
            continue
        total, current, j = 0, 0, i
        while j < len(tokens):
            word, below_100 = tokens[j], current % 100
            if word in _UNITS and (below_100 == 0 or (below_100 >= 20 and below_100 % 10 == 0)):
                current += _UNITS[word]
            elif word in _TENS and below_100 == 0:
                current += _TENS[word]
            elif word == "hundred" and 0 < current < 100:
                current *= 100
            elif word in ("thousand", "million") and current > 0:
                total += current * _SCALES[word]
                current = 0
            elif (
                word == "and"
                and (current % 100 == 0 and (current or total))
                and j + 1 < len(tokens)
                and (tokens[j + 1] in _UNITS or tokens[j + 1] in _TENS)
            ):
                pass  # "one hundred and five"
            else:
                break
            j += 1
        out.append(str(total + current))
        i = j
    return out


def _join_areas(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if _NUMBER_RE.match(token):
            for words in _AREA_WORDS:
                if tuple(tokens[i + 1 : i + 1 + len(words)]) == words:
                    out.append(token + "m2")
                    i += 1 + len(words)
                    break
            else:
                if i + 1 < len(tokens) and tokens[i + 1] in ("m2", "sqm"):
                    out.append(token + "m2")
                    i += 2
                else:
                    out.append(token)
                    i += 1
            continue
        out.append(token)
        i += 1
    return out


def answer_tokens(text: str | None) -> list[str]:
    """The normalised answer as a list of tokens (see the module docstring for the rules)."""
    if not text:
        return []
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _THOUSANDS_RE.sub("", text)
    text = _APOSTROPHE_RE.sub("", text)
    tokens = [t for t in _strip_punctuation(text).split() if t not in ARTICLES]
    tokens = _words_to_numbers(tokens)
    tokens = ["yes" if t in YES_WORDS else "no" if t in NO_WORDS else t for t in tokens]
    return _join_areas(tokens)


def normalize_answer(text: str | None) -> str:
    """Lower case, no punctuation or articles, digits for number words, one yes/no spelling."""
    return " ".join(answer_tokens(text))


def _references(reference: str | Sequence[str]) -> list[str]:
    return [reference] if isinstance(reference, str) else [str(r) for r in reference]


def exact_match(prediction: str | None, reference: str | Sequence[str]) -> bool:
    """Strict score: the normalised prediction equals a normalised reference (never when empty)."""
    predicted = normalize_answer(prediction)
    if not predicted:
        return False
    return any(predicted == normalize_answer(r) for r in _references(reference))


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


@dataclass(frozen=True)
class AnswerPool:
    """The candidate answers of one question type, normalised once and indexed by first word."""

    by_first: Mapping[str, tuple[tuple[str, ...], ...]]

    @classmethod
    def of(
        cls, answers: Iterable[str], tokenize: Callable[[str], list[str]] | None = None
    ) -> AnswerPool:
        """A pool of ``answers``, tokenised by ``tokenize`` (default :func:`answer_tokens`)."""
        tokenize = tokenize or answer_tokens
        index: dict[str, set[tuple[str, ...]]] = {}
        for answer in answers:
            words = tuple(tokenize(answer))
            if words:
                index.setdefault(words[0], set()).add(words)
        return cls({k: tuple(sorted(v)) for k, v in index.items()})


def named_answers(
    tokens: Sequence[str], pool: AnswerPool, extra: Iterable[Sequence[str]] = ()
) -> set[str]:
    """The candidates of ``pool`` (and the token lists ``extra``) that ``tokens`` name as whole
    words, each as its normalised text.

    A candidate found only inside an occurrence of a longer candidate is not named by it:
    ``dense residential`` names ``dense residential``, not ``residential`` as well.
    """
    tokens = list(tokens)
    extra_by_first: dict[str, set[tuple[str, ...]]] = {}
    for words in extra:
        if words:
            extra_by_first.setdefault(words[0], set()).add(tuple(words))
    spans: list[tuple[int, int, str]] = []
    for i, token in enumerate(tokens):
        for words in {*pool.by_first.get(token, ()), *extra_by_first.get(token, ())}:
            if tuple(tokens[i : i + len(words)]) == words:
                spans.append((i, i + len(words), " ".join(words)))
    return {
        name
        for start, end, name in spans
        if not any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)
    }


def _number_value(token: str) -> float | None:
    match = _NUMBER_TOKEN_RE.match(token)
    return float(match[1]) if match else None


def names_another_answer(
    predicted: Sequence[str],
    references: Sequence[Sequence[str]],
    candidates: AnswerPool | None = None,
) -> bool:
    """Whether normalised ``predicted`` tokens name an answer that no reference gives.

    Three kinds of candidate count: ``yes`` against ``no`` when a reference is one of them,
    any number when a reference holds a number (``3`` and ``3.0`` are the same number), and
    ``candidates``, the answers of the question's type.
    """
    ref_words = {w for r in references for w in r}
    for word, other in (("yes", "no"), ("no", "yes")):
        if word in ref_words and other not in ref_words and other in predicted:
            return True
    ref_numbers = {v for w in ref_words if (v := _number_value(w)) is not None}
    if ref_numbers and any(
        (v := _number_value(w)) is not None and v not in ref_numbers for w in predicted
    ):
        return True
    if candidates is not None:
        ref_names = {" ".join(r) for r in references}
        if named_answers(predicted, candidates, references) - ref_names:
            return True
    return False


def lenient_match(
    prediction: str | None,
    reference: str | Sequence[str],
    candidates: AnswerPool | Iterable[str] | None = None,
) -> bool:
    """Lenient score: a normalised reference appears in the normalised prediction as whole
    words, and the prediction names no other candidate answer (:func:`names_another_answer`):
    ``"yes no"`` is right for neither, ``"3 or 4"`` for neither count, and with ``candidates``
    (the answers of the question's type, as strings or an :class:`AnswerPool`) ``"urban or
    rural"`` for neither class.

    An empty prediction is wrong, and so is a reference that normalises to nothing.
    """
    predicted = answer_tokens(prediction)
    if not predicted:
        return False
    references = [tokens for r in _references(reference) if (tokens := answer_tokens(r))]
    if not any(_contains(predicted, r) for r in references):
        return False
    if candidates is not None and not isinstance(candidates, AnswerPool):
        candidates = AnswerPool.of(candidates)
    return not names_another_answer(predicted, references, candidates)


def read_number(text: str | None) -> float | None:
    """The first number in the normalised text (``"There are three."`` → 3.0), or None."""
    for token in answer_tokens(text):
        value = _number_value(token)
        if value is not None:
            return value
    return None


def normalize_label(label: str | None) -> str:
    """A class name for matching: normalised, ``_``/``-`` as spaces, a plural ``s`` dropped.

    ``"Storage_Tanks"``, ``"storage tank"`` and ``"storage-tank"`` all become ``"storage tank"``.
    """
    if not label:
        return ""
    tokens = answer_tokens(str(label).replace("_", " "))
    if (
        tokens
        and len(tokens[-1]) > 3
        and tokens[-1].endswith("s")
        and not tokens[-1].endswith("ss")
    ):
        tokens[-1] = tokens[-1][:-1]
    return " ".join(tokens)


_OPTION_RE = re.compile(r"^\s*([A-Z])\s*[.)：:]\s*(.+?)\s*$")


def choice_options(question: str) -> dict[str, str]:
    """The options of a multiple-choice question written one per line as ``A.text``."""
    options: dict[str, str] = {}
    for line in question.splitlines()[1:]:
        match = _OPTION_RE.match(line)
        if match:
            options[match[1]] = match[2]
    return options


_LETTER_ONLY_RE = re.compile(r"^\W*([A-Za-z])\W*$")
_LETTER_LEAD_RE = re.compile(r"^\W*[(\[]?([A-Za-z])\s*[.):\]]")
_LETTER_PHRASE_RE = re.compile(
    r"\b(?:answer|option)\s*(?:is|:)?\s*[(\[]?([A-Z])\b[)\].]?", re.IGNORECASE
)


def choice_letter(
    prediction: str | None, options: dict[str, str], *, lenient: bool = False
) -> str | None:
    """The option a prediction picks, or None.

    Strictly, the prediction is the letter alone (``C``, ``C.``, ``(C)``), starts with the letter
    and a ``.``/``)``/``:`` (``C. airport``), or is exactly one option's text after
    normalisation. Leniently, also ``the answer is C`` or exactly one option's text appearing in
    the prediction as whole words.
    """
    if not prediction or not prediction.strip():
        return None
    letters = {k.upper() for k in options}
    for pattern in (_LETTER_ONLY_RE, _LETTER_LEAD_RE):
        match = pattern.match(prediction)
        if match and match[1].upper() in letters:
            return match[1].upper()
    predicted = normalize_answer(prediction)
    exact = [k for k, text in options.items() if predicted and predicted == normalize_answer(text)]
    if len(exact) == 1:
        return exact[0]
    if not lenient:
        return None
    match = _LETTER_PHRASE_RE.search(prediction)
    if match and match[1].upper() in letters:
        return match[1].upper()
    tokens = answer_tokens(prediction)
    contained = [k for k, text in options.items() if _contains(tokens, answer_tokens(text))]
    return contained[0] if len(contained) == 1 else None
