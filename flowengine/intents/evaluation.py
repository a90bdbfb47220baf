"""How well an index routes labelled texts: the figures the benchmark prints and the tests hold.

In scope, a text is right when it starts its intent or gets a clarifying menu that contains it,
and wrong when it starts another intent; out of scope, it is right only when nothing starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .matcher import (
    THRESHOLDS,
    Answer,
    Candidate,
    Clarify,
    IntentIndex,
    Match,
    NoMatch,
    Thresholds,
    decide,
)


@dataclass
class Tally:
    """Counts of answers for one locale (or several, added)."""

    texts: int = 0
    matched_right: int = 0
    clarified_right: int = 0  # a clarifying menu that contains the right intent
    clarified_wrong: int = 0  # a clarifying menu of two other intents
    matched_wrong: int = 0  # started another intent's flow
    unmatched: int = 0
    out_of_scope: int = 0
    out_of_scope_unmatched: int = 0
    out_of_scope_matched: int = 0  # started a flow the shopper did not ask for
    misses: list[tuple[str, str, Answer]] = field(default_factory=list)  # (expected, text, answer)

    def count(self, expected: str | None, text: str, answer: Answer) -> None:
        if expected is None:
            self.out_of_scope += 1
            if isinstance(answer, NoMatch):
                self.out_of_scope_unmatched += 1
                return
            if isinstance(answer, Match):
                self.out_of_scope_matched += 1
            self.misses.append(("(out of scope)", text, answer))
            return
        self.texts += 1
        if isinstance(answer, Match) and answer.intent == expected:
            self.matched_right += 1
            return
        if isinstance(answer, Clarify) and expected in (answer.first.intent, answer.second.intent):
            self.clarified_right += 1
            return
        if isinstance(answer, Match):
            self.matched_wrong += 1
        elif isinstance(answer, Clarify):
            self.clarified_wrong += 1
        else:
            self.unmatched += 1
        self.misses.append((expected, text, answer))

    def __add__(self, other: Tally) -> Tally:
        total = Tally()
        for name in Tally.__dataclass_fields__:
            setattr(total, name, getattr(self, name) + getattr(other, name))
        return total

    @property
    def right_or_clarify(self) -> float:
        return _share(self.matched_right + self.clarified_right, self.texts)

    @property
    def clarify_rate(self) -> float:
        return _share(self.clarified_right + self.clarified_wrong, self.texts)

    @property
    def wrong_flow_rate(self) -> float:
        return _share(self.matched_wrong, self.texts)

    @property
    def out_of_scope_right(self) -> float:
        return _share(self.out_of_scope_unmatched, self.out_of_scope)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def evaluate(
    index: IntentIndex,
    locale: str,
    expected: Mapping[str, Sequence[str]],
    out_of_scope: Sequence[str] = (),
    thresholds: Thresholds = THRESHOLDS,
) -> Tally:
    """Match every labelled text (intent -> texts) and every out-of-scope text in `locale`."""
    tally = Tally()
    for intent, texts in expected.items():
        for text in texts:
            tally.count(intent, text, index.match(text, locale, thresholds))
    for text in out_of_scope:
        tally.count(None, text, index.match(text, locale, thresholds))
    return tally


@dataclass(frozen=True)
class Scored:
    """A text with its expected intent (None: out of scope) and every intent's score."""

    expected: str | None
    text: str
    candidates: list[Candidate]


def score_leave_one_out(index: IntentIndex, locale: str) -> list[Scored]:
    """Each example of a locale scored against all the others (for tuning on training data)."""
    return [
        Scored(example.intent, example.text, index.example_scores(locale, position))
        for position, example in enumerate(index.examples(locale))
    ]


def tally_scored(scored: Sequence[Scored], thresholds: Thresholds = THRESHOLDS) -> Tally:
    """The tally of scored texts under some thresholds (scoring once, deciding many times)."""
    tally = Tally()
    for item in scored:
        tally.count(item.expected, item.text, decide(item.candidates, thresholds))
    return tally
