"""Match a shopper's free text to an intent: a confident match, two close candidates, or none.

Each example phrase becomes a TF-IDF vector of character n-grams and words (see `features`),
a feature weighing more the fewer intents of its locale use it; a text's score for an intent is
the cosine similarity to that intent's nearest example, blended with the similarity to the intent's
centroid (the mean of its examples) so that one stray example cannot carry an intent alone.
Everything is computed once in `build_index` (at compile time); matching is a sparse dot product
through an inverted index.
Pure and deterministic: no I/O, no model download, no randomness.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .features import FEATURES, FeatureOptions, features
from .normalize import has_words, normalize

# intent id -> locale -> example phrases, the shape a flow's `intents:` key carries.
Examples = Mapping[str, Mapping[str, Sequence[str]]]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where the blended cosine score (0..1) turns into an answer."""

    no_match_below: float  # best score under this: the text is about nothing we know
    confident_from: float  # best at least this, and `clarify_margin` ahead of the second: start it
    clarify_margin: float  # the two best closer than this (or the best not confident): ask which


# Tuned by leave-one-out on the training examples only (`python bench/intents.py --tune`);
# docs/intents.md explains each choice.
THRESHOLDS = Thresholds(no_match_below=0.125, confident_from=0.225, clarify_margin=0.12)
# Weight of the intent's centroid in its score (the rest is its nearest example); same tuning.
CENTROID_WEIGHT = 0.5
# Inverse intent frequency raised to this power: above 1, n-grams that belong to one intent
# dominate n-grams shared by several ("order", "objednávka", "pesanan"); same tuning.
IDF_POWER = 2.0
# Longer texts are not menu requests (a pasted e-mail, a flood) and are not matched at all:
# this bounds the cost of one match whatever a client sends.
MAX_TEXT_CHARS = 300

# too_long: over MAX_TEXT_CHARS; unknown_locale: no examples in the locale; no_words: nothing but
# digits, e-mails, punctuation, emoji or controls; low_score: no intent close enough.
NoMatchReason = Literal["too_long", "unknown_locale", "no_words", "low_score"]


@dataclass(frozen=True, slots=True)
class Candidate:
    intent: str
    score: float


@dataclass(frozen=True, slots=True)
class Match:
    """Confident: start this intent's flow (or pick its option)."""

    intent: str
    score: float


@dataclass(frozen=True, slots=True)
class Clarify:
    """Two intents too close to choose between: offer both in a clarifying menu, best first."""

    first: Candidate
    second: Candidate


@dataclass(frozen=True, slots=True)
class NoMatch:
    """Nothing fits. `best` is the closest intent (for analytics), None when nothing was scored."""

    reason: NoMatchReason
    best: Candidate | None = None


Answer = Match | Clarify | NoMatch

Vector = dict[str, float]


def _unit(vector: Mapping[str, float]) -> Vector:
    norm = math.sqrt(sum(w * w for w in vector.values()))
    return {f: w / norm for f, w in vector.items()} if norm else {}


@dataclass(frozen=True, slots=True)
class ExampleRef:
    """One example phrase: which intent, and its position in that intent's list for the locale."""

    intent: str
    index: int
    text: str


class _LocaleIndex:
    """Every example of one locale, vectorised, with inverted indexes for examples and centroids."""

    def __init__(
        self,
        locale: str,
        phrases: Sequence[ExampleRef],
        centroid_weight: float,
        idf_power: float,
        options: FeatureOptions,
    ) -> None:
        self.locale = locale
        self.options = options
        self.centroid_weight = centroid_weight
        self.examples = tuple(phrases)
        self.intents = tuple(sorted({ref.intent for ref in self.examples}))
        position = {intent: i for i, intent in enumerate(self.intents)}
        self.intent_of = [position[ref.intent] for ref in self.examples]
        counts = [features(normalize(ref.text), locale, options) for ref in self.examples]
        # Rarity counted across intents, not examples: "objednávku" in the examples of four
        # intents says little about which one is meant; "zrušit", only in cancel_order, says it.
        intents_with: dict[str, set[int]] = {}
        for which, count in zip(self.intent_of, counts, strict=True):
            for f in count:
                intents_with.setdefault(f, set()).add(which)
        total = len(self.intents)
        self.idf = {
            f: (math.log((1 + total) / (1 + len(holders))) + 1) ** idf_power
            for f, holders in intents_with.items()
        }
        # A feature no example has weighs as the rarest: it counts in a text's norm, so a text
        # mostly about something else scores low even when a few n-grams happen to match.
        self.unknown_idf = (math.log(1 + total) + 1) ** idf_power
        self.vectors = [self._weigh(count) for count in counts]
        sums: list[Counter[str]] = [Counter() for _ in self.intents]
        for which, vector in zip(self.intent_of, self.vectors, strict=True):
            sums[which].update(vector)
        self.centroids = [_unit(total_vector) for total_vector in sums]
        # One inverted index over both: slots 0..n-1 are the examples, n.. the centroids.
        self.postings = self._postings([*self.vectors, *self.centroids])

    def _weigh(self, count: Mapping[str, int]) -> Vector:
        return _unit(
            {f: (1 + math.log(n)) * self.idf.get(f, self.unknown_idf) for f, n in count.items()}
        )

    @staticmethod
    def _postings(vectors: Sequence[Vector]) -> dict[str, tuple[tuple[int, float], ...]]:
        postings: dict[str, list[tuple[int, float]]] = {}
        for i, vector in enumerate(vectors):
            for f, w in vector.items():
                postings.setdefault(f, []).append((i, w))
        return {f: tuple(entries) for f, entries in postings.items()}

    def vector(self, normalized: str) -> Vector:
        return self._weigh(features(normalized, self.locale, self.options))

    def scores(self, query: Vector, leave_out: int | None = None) -> list[Candidate]:
        """Every intent's blended score for a query vector, best first (ties by intent id).

        `leave_out` excludes one example from the nearest-example part (and from its
        centroid), to score an example against the others (leave-one-out).
        """
        count = len(self.examples)
        dots = [0.0] * (count + len(self.intents))
        postings = self.postings
        for f, w in query.items():
            for i, v in postings.get(f, ()):
                dots[i] += w * v
        nearest_dot, centroid_dot = dots[:count], dots[count:]
        if leave_out is not None:
            centroid_dot[self.intent_of[leave_out]] = self._centroid_without(query, leave_out)
            nearest_dot[leave_out] = -1.0
        nearest = [0.0] * len(self.intents)
        for i, dot in enumerate(nearest_dot):
            which = self.intent_of[i]
            if dot > nearest[which]:
                nearest[which] = dot
        weight = self.centroid_weight
        blended = [
            Candidate(intent, (1 - weight) * nearest[i] + weight * centroid_dot[i])
            for i, intent in enumerate(self.intents)
        ]
        return sorted(blended, key=lambda c: (-c.score, c.intent))

    def _centroid_without(self, query: Vector, leave_out: int) -> float:
        which = self.intent_of[leave_out]
        total: Counter[str] = Counter()
        for i, vector in enumerate(self.vectors):
            if i != leave_out and self.intent_of[i] == which:
                total.update(vector)
        centroid = _unit(total)
        return sum(w * centroid.get(f, 0.0) for f, w in query.items())


def decide(candidates: Sequence[Candidate], thresholds: Thresholds = THRESHOLDS) -> Answer:
    """The answer for scored candidates (best first)."""
    if not candidates or candidates[0].score <= 0:
        return NoMatch("low_score", candidates[0] if candidates else None)
    best = candidates[0]
    if best.score < thresholds.no_match_below:
        return NoMatch("low_score", best)
    second = candidates[1] if len(candidates) > 1 and candidates[1].score > 0 else None
    gap = best.score - (second.score if second else 0.0)
    if best.score >= thresholds.confident_from and gap >= thresholds.clarify_margin:
        return Match(best.intent, best.score)
    if second is None:  # unsure, and nothing else to offer beside it
        return NoMatch("low_score", best)
    return Clarify(best, second)


class IntentIndex:
    """Examples of every intent in every locale, ready to match (build with `build_index`)."""

    def __init__(self, locales: Mapping[str, _LocaleIndex]) -> None:
        self._locales = dict(locales)

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(sorted(self._locales))

    def examples(self, locale: str) -> tuple[ExampleRef, ...]:
        index = self._locales.get(locale)
        return index.examples if index else ()

    def _scores(self, text: str, locale: str) -> list[Candidate] | NoMatch:
        if len(text) > MAX_TEXT_CHARS:
            return NoMatch("too_long")
        index = self._locales.get(locale)
        if index is None:
            return NoMatch("unknown_locale")
        normalized = normalize(text)
        # Digits, an e-mail, emoji, punctuation alone ("1003", "2 + 2", "👍") ask for nothing.
        if not has_words(normalized):
            return NoMatch("no_words")
        return index.scores(index.vector(normalized))

    def scores(self, text: str, locale: str) -> list[Candidate]:
        """Every intent's score for a text in a locale, best first ([]: nothing to score)."""
        scored = self._scores(text, locale)
        return [] if isinstance(scored, NoMatch) else scored

    def example_vector(self, locale: str, position: int) -> Mapping[str, float]:
        """The unit vector of the example at `position` in `examples(locale)`."""
        return self._locales[locale].vectors[position]

    def example_scores(self, locale: str, position: int) -> list[Candidate]:
        """Scores of the example at `position` in `examples(locale)` against all the others."""
        index = self._locales[locale]
        return index.scores(index.vectors[position], leave_out=position)

    def match(self, text: str, locale: str, thresholds: Thresholds = THRESHOLDS) -> Answer:
        """Match a shopper's text typed in `locale` against that locale's examples."""
        scored = self._scores(text, locale)
        return scored if isinstance(scored, NoMatch) else decide(scored, thresholds)


def build_index(
    examples: Examples,
    centroid_weight: float = CENTROID_WEIGHT,
    idf_power: float = IDF_POWER,
    options: FeatureOptions = FEATURES,
) -> IntentIndex:
    """Vectorise every example once. Examples without a word are skipped (the checks name them)."""
    by_locale: dict[str, list[ExampleRef]] = {}
    for intent in sorted(examples):
        for locale, phrases in examples[intent].items():
            for i, phrase in enumerate(phrases):
                if has_words(normalize(phrase)):
                    by_locale.setdefault(locale, []).append(ExampleRef(intent, i, phrase))
    return IntentIndex(
        {
            locale: _LocaleIndex(locale, refs, centroid_weight, idf_power, options)
            for locale, refs in by_locale.items()
        }
    )
