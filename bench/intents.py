"""Benchmark: how well free text is routed to the shipped intents, and what one match costs.

Builds the index from the shipped flows' own `intents:` (flows/*.yaml, as the project compiles
them: the examples the server matches against) and matches every held-out text
(tests/intents/heldout.<locale>.yaml, never used for tuning) in its locale. Prints per locale
and in total: right-or-clarify (started the right flow, or a clarifying menu containing it),
clarifying rate, wrong-flow rate, texts left unmatched, and out-of-scope texts correctly left
unmatched. Then times one match against all shipped intents of a locale (mean and p99, µs),
against a baseline in the same run: a dict lookup of the exact text (what matching an option's
exact label costs).

    python bench/intents.py [--misses] [--rounds 200]
    python bench/intents.py --tune     # leave-one-out on the training set: compares the feature
                                       # sets and weightings, picks the thresholds (~3 min)
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowengine.intents import THRESHOLDS, IntentIndex, Thresholds, build_index  # noqa: E402
from flowengine.intents.evaluation import (  # noqa: E402
    Scored,
    Tally,
    evaluate,
    score_leave_one_out,
    tally_scored,
)
from flowengine.intents.features import FEATURES, FeatureOptions  # noqa: E402
from tests.intents import LOCALES, held_out, training_set  # noqa: E402

# --tune: the constraints every candidate must meet on the training set (leave one out), and
# what it then maximises: right-or-clarify, a clarifying menu counted as a tenth of a miss.
TUNE_MAX_WRONG = 0.02
TUNE_MIN_OUT_OF_SCOPE = 0.80
TUNE_CLARIFY_COST = 0.1


def _row(name: str, tally: Tally) -> str:
    return (
        f"| {name} | {tally.texts} | {tally.right_or_clarify:.1%} | {tally.clarify_rate:.1%} "
        f"| {tally.wrong_flow_rate:.1%} | {tally.unmatched} "
        f"| {tally.out_of_scope_unmatched}/{tally.out_of_scope} |"
    )


HEADER = (
    "| locale | texts | right or clarify | clarify | wrong flow | unmatched "
    "| out of scope unmatched |\n|---|---|---|---|---|---|---|"
)


def accuracy(index: IntentIndex, show_misses: bool) -> None:
    print(HEADER)
    total = Tally()
    for locale in LOCALES:
        data = held_out(locale)
        tally = evaluate(index, locale, data.expect, data.out_of_scope)
        print(_row(locale, tally))
        total += tally
    print(_row("total", total))
    if show_misses:
        for expected, text, answer in total.misses:
            print(f"  miss: expected {expected}: {text!r} -> {answer}")


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timing(index: IntentIndex, rounds: int) -> None:
    texts = [
        (locale, text)
        for locale in LOCALES
        for texts in held_out(locale).expect.values()
        for text in texts
    ]
    exact = {(locale, text): i for i, (locale, text) in enumerate(texts)}
    for locale, text in texts:  # warm up
        index.match(text, locale)
    # Wall time, and this thread's CPU time: on a shared machine the wall clock also counts the
    # time other processes held the core, the CPU time does not.
    matched: list[float] = []
    matched_cpu: list[float] = []
    looked_up: list[float] = []
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    for _ in range(rounds):
        for locale, text in texts:
            c0, t0 = cpu(), wall()
            index.match(text, locale)
            t1, c1 = wall(), cpu()
            exact.get((locale, text))
            t2 = wall()
            matched.append((t1 - t0) / 1000)
            matched_cpu.append((c1 - c0) / 1000)
            looked_up.append((t2 - t1) / 1000)
    intents = len({e.intent for locale in LOCALES for e in index.examples(locale)})
    examples = sum(len(index.examples(locale)) for locale in LOCALES) / len(LOCALES)
    print(
        f"\nOne match against all {intents} intents of a locale (~{examples:.0f} examples), "
        f"{len(matched):,} matches, load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores:"
    )
    print("| what | mean µs | p50 µs | p99 µs |\n|---|---|---|---|")
    for name, samples in [
        ("match (wall)", matched),
        ("match (CPU time)", matched_cpu),
        ("baseline: dict lookup of the exact text (wall)", looked_up),
    ]:
        print(
            f"| {name} | {statistics.fmean(samples):.1f} | {_percentile(samples, 0.5):.1f} "
            f"| {_percentile(samples, 0.99):.1f} |"
        )


def tune() -> None:
    """Grid search on the training set only: each example left out and matched against the rest,
    plus the training out-of-scope texts. Prints the best thresholds per centroid weight."""
    training = training_set()
    print(
        f"Constraints: wrong flow <= {TUNE_MAX_WRONG:.0%} in every locale, out of scope "
        f"unmatched >= {TUNE_MIN_OUT_OF_SCOPE:.0%}; maximise right-or-clarify - "
        f"{TUNE_CLARIFY_COST} x clarify rate (leave-one-out on the shipped flows' intents)."
    )
    print(
        "| features | centroid weight | idf power | no match / confident / margin "
        "| right or clarify | clarify | wrong | out of scope | objective |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    overall: tuple[float, str, float, float, Thresholds] | None = None
    steps = [round(0.025 * i, 3) for i in range(2, 17)]  # 0.05 .. 0.4
    margins = [round(0.01 * i, 2) for i in range(31)]  # 0 .. 0.3
    plain = FeatureOptions(
        words=False, stem_chars=0, stop_words=False, thai_clusters=False, thai_particles=False
    )
    variants = {
        "n-grams only": plain,
        "n-grams, Thai particles off": replace(plain, thai_particles=True),
        "+ words": replace(plain, thai_particles=True, words=True),
        "+ words, stems 4": replace(FEATURES, stem_chars=4),
        "+ words, stems 5": replace(FEATURES, stem_chars=5),
        "+ words, stems 4, stop words": replace(FEATURES, stem_chars=4, stop_words=True),
        "+ words, stems 4, Thai particles kept": replace(
            FEATURES, stem_chars=4, thai_particles=False
        ),
        "+ words, stems 4, Thai clusters": replace(FEATURES, stem_chars=4, thai_clusters=True),
    }
    for (name, options), weight, power in itertools.product(
        variants.items(), (0.0, 0.3, 0.5, 0.7, 1.0), (1.0, 2.0, 3.0)
    ):
        index = build_index(
            training.intents, centroid_weight=weight, idf_power=power, options=options
        )
        scored = {
            locale: score_leave_one_out(index, locale)
            + [
                Scored(None, text, index.scores(text, locale))
                for text in training.out_of_scope[locale]
            ]
            for locale in LOCALES
        }
        best: tuple[float, Thresholds, Tally] | None = None
        for no_match, extra, margin in itertools.product(steps, (0.0, 0.05, 0.1), margins):
            thresholds = Thresholds(no_match, round(no_match + extra, 3), margin)
            per_locale = [tally_scored(scored[locale], thresholds) for locale in LOCALES]
            tally = sum(per_locale, Tally())
            worst_wrong = max(locale_tally.wrong_flow_rate for locale_tally in per_locale)
            if worst_wrong > TUNE_MAX_WRONG or tally.out_of_scope_right < TUNE_MIN_OUT_OF_SCOPE:
                continue
            objective = tally.right_or_clarify - TUNE_CLARIFY_COST * tally.clarify_rate
            if best is None or objective > best[0]:
                best = (objective, thresholds, tally)
        if best is None:
            print(f"| {name} | {weight} | {power} | none meets the constraints | | | | | |")
            continue
        objective, thresholds, tally = best
        if overall is None or objective > overall[0]:
            overall = (objective, name, weight, power, thresholds)
        print(
            f"| {name} | {weight} | {power} | {thresholds.no_match_below} / "
            f"{thresholds.confident_from} / {thresholds.clarify_margin} | "
            f"{tally.right_or_clarify:.1%} | {tally.clarify_rate:.1%} | "
            f"{tally.wrong_flow_rate:.1%} | {tally.out_of_scope_right:.0%} | {objective:.3f} |"
        )
    if overall is not None:
        _, name, weight, power, thresholds = overall
        print(f"Best: {name}, centroid weight {weight}, idf power {power}, {thresholds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="leave-one-out on the training set")
    parser.add_argument("--misses", action="store_true", help="print every held-out miss")
    parser.add_argument("--rounds", type=int, default=200, help="timing rounds over all texts")
    args = parser.parse_args()
    print(
        f"{date.today()}, {platform.machine()}, Python {platform.python_version()}, "
        f"thresholds {THRESHOLDS}"
    )
    if args.tune:
        tune()
        return
    index = build_index(training_set().intents)
    accuracy(index, args.misses)
    timing(index, args.rounds)


if __name__ == "__main__":
    main()
