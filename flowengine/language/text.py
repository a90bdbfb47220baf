"""Localised text: a string, or a map of locale -> string, resolved along a fallback chain.

`fr-CA` looks for `fr-ca`, then `fr`, then the flow's default locale, then any text at all, so a
shopper always sees something; `render` also says which locale was used, so conversation tests can
fail when a shipped translation is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .templates import CHAIN, Template, template


def normalise_locale(locale: str) -> str:
    return locale.strip().replace("_", "-").lower()


@lru_cache(maxsize=512)
def fallback_chain(locale: str, default: str) -> tuple[str, ...]:
    """`fr-CA` with default `en` -> ('fr-ca', 'fr', 'en')."""
    parts = normalise_locale(locale).split("-") if locale else []
    chain = ["-".join(parts[:i]) for i in range(len(parts), 0, -1)]
    chain.append(normalise_locale(default))
    return tuple(dict.fromkeys(c for c in chain if c))


def served_locale(locale: str, locales: Sequence[str]) -> str:
    """The project locale a shopper on a `locale` page reads (`cs` for `cs-CZ`; the default,
    `locales[0]`, for one the flows are not written in): what analytics count by."""
    return _served(locale, tuple(locales))


@lru_cache(maxsize=1024)
def _served(locale: str, locales: tuple[str, ...]) -> str:
    # Cached: every analytics event of every step asks (a tenth of an engine step's time).
    return next((c for c in fallback_chain(locale, "") if c in locales), locales[0])


@dataclass(frozen=True, slots=True)
class Text:
    """Text in one or more locales, each a compiled template."""

    by_locale: Mapping[str, Template]

    @classmethod
    def of(cls, value: str | Mapping[str, str]) -> Text:
        if isinstance(value, str):
            return cls({"*": template(value)})
        return cls({normalise_locale(k): template(v) for k, v in value.items()})

    @property
    def names(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for t in self.by_locale.values():
            out |= t.names
        return out

    @property
    def locales(self) -> frozenset[str]:
        return frozenset(self.by_locale)

    def pick(self, chain: tuple[str, ...]) -> tuple[Template, str]:
        """The template for the first locale of `chain` that has one, and that locale."""
        by = self.by_locale
        if "*" in by:  # one text for every locale
            return by["*"], chain[0] if chain else "*"
        for loc in chain:
            t = by.get(loc)
            if t is not None:
                return t, loc
        loc, t = next(iter(by.items()))
        return t, loc

    def render(
        self, chain: tuple[str, ...], variables: Mapping[str, Any], *, markup: bool = False
    ) -> tuple[str, str]:
        """The text for the first locale of `chain` and that locale (`markup`: see Template).
        Money, numbers and dates in it are formatted for that locale: a Czech text that fell
        back to English writes `€25.00`, as the English around it does."""
        t, loc = self.pick(chain)
        shown = chain if loc == "*" or chain[:1] == (loc,) else (loc, *chain)
        if variables.get(CHAIN) != shown:
            variables = {**variables, CHAIN: shown}
        return t.render(variables, markup=markup), loc
