"""The features of a normalised text that intents are matched on: character n-grams and whole
words, the polite particles of Thai taken off.

Character n-grams carry most of the weight. In Thai there are no spaces between words, and in
Czech, Romanian and Indonesian one word takes many forms ("objednávka", "objednávku",
"objednávky"; "pesan", "pesanan", "memesan"): the forms share most of their n-grams, with no word
list, stemmer or dictionary per language, and a typo changes a few n-grams, not the whole word.
In spaced scripts the whole word is a feature too, so a word spelt out exactly counts more than
one that only shares a few letters with it. Word stems, per-locale stop lists and Thai character
clusters are options that `bench/intents.py --tune` compares; on the shipped examples they did
not help (docs/intents.md), so `FEATURES` leaves them off.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

# n-gram sizes, tuned by leave-one-out on the training examples (bench/intents.py --tune).
# Spaced scripts: each word padded with a space at both ends, so " ro" (a word's start) and
# "er " (its end) are features of their own and short words still have some.
SPACED_NGRAMS = (3, 4)
# Thai: one run of Thai characters (spaces in Thai separate phrases, not words), plain n-grams;
# single characters count too, as a Thai syllable is often only two or three of them.
THAI_NGRAMS = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class FeatureOptions:
    """Which features a text has beside its character n-grams (compared by `--tune`)."""

    words: bool  # a word of a spaced script is a feature of its own ("[torn]")
    stem_chars: int  # and so are its first letters when it is longer ("[zmer~"); 0: none
    stop_words: bool  # the locale's stop words (below) are left out
    thai_clusters: bool  # Thai n-grams count character clusters ("เก็", "บ"), not characters
    thai_particles: bool  # Thai polite particles (below) are taken off the end of a phrase


# Chosen by leave-one-out on the training examples (bench/intents.py --tune).
FEATURES = FeatureOptions(
    words=True, stem_chars=0, stop_words=False, thai_clusters=False, thai_particles=True
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that say nothing about what a shopper wants, per locale (already normalised: no
# diacritics, casefolded): greetings, articles, pronouns, auxiliaries and fillers. They are
# dropped before features are taken, so the words that do say it carry the score, and a
# greeting alone ("hello", "buna ziua") matches nothing. Negations, question words and the
# words of an action ("back" in "money back") are not here: they tell intents apart.
STOP_WORDS: Mapping[str, frozenset[str]] = {
    "en": _words(
        "a an the i d m s ll re ve im me my mine you your we our us it its is are was were be "
        "been am do does did to of for in on at with and or so this that these those there "
        "hi hello hey hiya morning good please pls thanks thank yo just some any can could would "
        "will shall should"
    ),
    "cs": _words(
        "a i v ve na do z ze s se si je jsem jsi jste jsou to ten ta ty tu tom mi me mne mu ji "
        "jim vam vas nam nas muj moje moji mou sve svou dobry den dobre rano vecer ahoj zdravim "
        "prosim dekuji dekuju diky tedy taky ale"
    ),
    "id": _words(
        "kak ka gan min sis bang mas mbak halo hai hi pagi siang sore malam selamat ya yah dong "
        "deh sih nih tuh aja saja lho loh yang ke dari dan atau itu ini saya aku gue gua kamu "
        "anda nya tolong mohon please makasih terima kasih"
    ),
    "ro": _words(
        "a al ai ale o un una si sa se ma mi te va ne eu tu el ea noi voi ei la cu de din pe in "
        "e este sunt am are buna ziua seara dimineata salut rog multumesc mersi "
        "meu mea mei mele"
    ),
}
# Thai: polite particles that end a phrase ("…ค่ะ", "…นะครับ"), longest first; taken off the end
# of each space-separated Thai piece before the n-grams (they are in every intent's examples).
THAI_PARTICLES = ("นะครับ", "นะคะ", "ครับ", "ค่ะ", "คะ", "ค่า", "จ้า", "จ้ะ")


def _is_thai(char: str) -> bool:
    return "\u0e00" <= char <= "\u0e7f"


# A Thai cluster: a consonant with the marks above and below it and the vowels written after it
# (ะ า ำ ๅ), and a vowel written before its consonant (เ แ โ ใ ไ) bound to that consonant. A
# cluster is the smallest piece that can be read alone, which single characters are not.
_THAI_LEADING = frozenset("เแโใไ")
_THAI_FOLLOWING = frozenset("ะาำๅ")


def _thai_clusters(run: str) -> list[str]:
    clusters: list[str] = []
    bound = False  # the last cluster is a leading vowel waiting for its consonant
    for char in run:
        attaches = unicodedata.combining(char) or unicodedata.category(char) == "Mn"
        if clusters and (bound or attaches or char in _THAI_FOLLOWING):
            clusters[-1] += char
            bound = False
        else:
            clusters.append(char)
            bound = char in _THAI_LEADING
    return clusters


def _strip_particles(piece: str, whole: bool) -> str:
    """`piece` without the particles at its end; all of it only when `whole` (a particle after
    other Thai words: "ยกเลิก ค่ะ"), since a particle typed alone is all the shopper said."""
    stripped = True
    while stripped:
        stripped = False
        for particle in THAI_PARTICLES:
            if piece.endswith(particle) and (whole or len(piece) > len(particle)):
                piece = piece[: -len(particle)]
                stripped = True
                break
    return piece


def _runs(
    text: str, stop: frozenset[str] = frozenset(), particles: bool = True
) -> list[tuple[bool, str]]:
    """Split a normalised text into (is_thai, run): Thai runs ignore the spaces inside them;
    each other run is one word, stop words left out."""
    runs: list[tuple[bool, str]] = []
    for word in text.split(" "):
        if word in stop:
            continue
        start = 0
        for i in range(1, len(word) + 1):
            if i == len(word) or _is_thai(word[i]) != _is_thai(word[start]):
                thai = _is_thai(word[start])
                piece = word[start:i]
                after_thai = bool(runs) and runs[-1][0]
                if thai and particles:
                    piece = _strip_particles(piece, whole=after_thai)
                if thai and after_thai:
                    runs[-1] = (True, runs[-1][1] + piece)
                else:
                    runs.append((thai, piece))
                start = i
    return runs


def _ngrams(text: str, sizes: tuple[int, ...]) -> list[str]:
    return [text[i : i + n] for n in sizes for i in range(len(text) - n + 1)]


def features(normalized: str, locale: str = "", options: FeatureOptions = FEATURES) -> Counter[str]:
    """The feature counts of a text already passed through `normalize`, in `locale` (whose stop
    words are left out; a locale without a stop list keeps every word)."""
    counts: Counter[str] = Counter()
    stop = STOP_WORDS.get(locale, frozenset()) if options.stop_words else frozenset()
    stem = options.stem_chars
    for thai, run in _runs(normalized, stop, options.thai_particles):
        if thai and options.thai_clusters:
            clusters = _thai_clusters(run)
            counts.update(
                "|".join(clusters[i : i + n])
                for n in THAI_NGRAMS
                for i in range(len(clusters) - n + 1)
            )
            continue
        if thai:
            counts.update(_ngrams(run, THAI_NGRAMS))
            continue
        counts.update(_ngrams(f" {run} ", SPACED_NGRAMS))
        # Brackets never survive normalisation, so these cannot collide with an n-gram.
        if options.words:
            counts[f"[{run}]"] += 1
        if stem and len(run) > stem + 1:
            counts[f"[{run[:stem]}~"] += 1
    return counts
