"""Static checks of intent examples, for `validate`: problems are returned as data (which intent,
locale, example, the other intent, scores); the validator adds file:line and the message.

* examples of two intents too close to tell apart (`TooClose`),
* an intent without examples in a project locale (`MissingLocale`),
* an example that matches another intent better than its own (`MatchesOther`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .matcher import THRESHOLDS, ExampleRef, Examples, IntentIndex, Match, Thresholds, decide
from .normalize import has_words, normalize

# Two examples of different intents at least this similar (cosine of their vectors, 0..1): a
# shopper typing either could be sent to either flow. Identical after normalisation scores 1.
TOO_CLOSE_FROM = 0.8


@dataclass(frozen=True, slots=True)
class TooClose:
    """`intent`'s example `index` and `other`'s example `other_index` (in `locale`) are alike."""

    locale: str
    intent: str
    index: int
    other: str
    other_index: int
    score: float


@dataclass(frozen=True, slots=True)
class MissingLocale:
    """`intent` has no usable example in `locale` (none, or none with a word in it)."""

    intent: str
    locale: str


@dataclass(frozen=True, slots=True)
class MatchesOther:
    """`intent`'s example `index`, matched against all the other examples (itself left out),
    confidently starts `other`: a shopper typing it would reach the wrong flow."""

    locale: str
    intent: str
    index: int
    other: str
    own_score: float
    other_score: float


def missing_locales(examples: Examples, locales: Sequence[str]) -> list[MissingLocale]:
    """Every (intent, locale) of the project without a single example that has a word."""
    return [
        MissingLocale(intent, locale)
        for intent in sorted(examples)
        for locale in locales
        if not any(has_words(normalize(p)) for p in examples[intent].get(locale, ()))
    ]


def too_close(index: IntentIndex, threshold: float = TOO_CLOSE_FROM) -> list[TooClose]:
    """Pairs of examples of different intents, in one locale, at least `threshold` alike."""
    found: list[TooClose] = []
    for locale in index.locales:
        refs = index.examples(locale)
        vectors = [index.example_vector(locale, i) for i in range(len(refs))]
        for i, (ref, vector) in enumerate(zip(refs, vectors, strict=True)):
            for j in range(i + 1, len(refs)):
                other: ExampleRef = refs[j]
                if other.intent == ref.intent:
                    continue
                score = sum(w * vectors[j].get(f, 0.0) for f, w in vector.items())
                if score >= threshold:
                    found.append(
                        TooClose(locale, ref.intent, ref.index, other.intent, other.index, score)
                    )
    return found


def matches_other(index: IntentIndex, thresholds: Thresholds = THRESHOLDS) -> list[MatchesOther]:
    """Examples that, left out and matched against the others, confidently start another intent.

    An example that is merely closer to another intent but would get a clarifying menu, or no
    match (its words appear in no other example), is not reported: it still adds words.
    """
    found: list[MatchesOther] = []
    for locale in index.locales:
        for position, ref in enumerate(index.examples(locale)):
            scores = index.example_scores(locale, position)
            answer = decide(scores, thresholds)
            if not isinstance(answer, Match) or answer.intent == ref.intent:
                continue
            own = next((c.score for c in scores if c.intent == ref.intent), 0.0)
            found.append(
                MatchesOther(locale, ref.intent, ref.index, answer.intent, own, answer.score)
            )
    return found
