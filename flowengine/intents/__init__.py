"""Free-text intents: route what a shopper types to the flow it asks for, in every locale."""

from .features import FEATURES, FeatureOptions
from .matcher import (
    CENTROID_WEIGHT,
    IDF_POWER,
    MAX_TEXT_CHARS,
    THRESHOLDS,
    Answer,
    Candidate,
    Clarify,
    ExampleRef,
    Examples,
    IntentIndex,
    Match,
    NoMatch,
    Thresholds,
    build_index,
)
from .normalize import normalize

__all__ = [
    "CENTROID_WEIGHT",
    "FEATURES",
    "IDF_POWER",
    "MAX_TEXT_CHARS",
    "THRESHOLDS",
    "Answer",
    "Candidate",
    "Clarify",
    "ExampleRef",
    "Examples",
    "FeatureOptions",
    "IntentIndex",
    "Match",
    "NoMatch",
    "Thresholds",
    "build_index",
    "normalize",
]
