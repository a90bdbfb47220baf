"""The pure engine: `start` a conversation, then `step` it with events."""

from .model import (
    ActionResult,
    AskForPerson,
    CallAction,
    Choose,
    EngineError,
    HandoffUpdate,
    Message,
    RequestHandoff,
    Restart,
    Result,
    State,
    Text,
)
from .step import start, step

__all__ = [
    "ActionResult",
    "AskForPerson",
    "CallAction",
    "Choose",
    "EngineError",
    "HandoffUpdate",
    "Message",
    "RequestHandoff",
    "Restart",
    "Result",
    "State",
    "Text",
    "start",
    "step",
]
