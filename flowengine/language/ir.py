"""The compiled form of a flow: a graph of steps with resolved edges.

Every step has a `key`, its address in the flow: the author's `id`, or a generated address such as
`steps[3]` or `check_status.cases.shipped[0]` for inline branch steps. Edges map a label (`next`,
`ok`, `error`, `case:shipped`, `option:track`...) to a target key, or to `END` / `HANDOFF`.
The engine walks this graph; the checks, the graph drawer and coverage read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .source import Path, SourceMap
from .templates import Expression, Template
from .text import Text
from .validators import Validator

END = "end"
HANDOFF = "handoff"
RESERVED_TARGETS = frozenset({END, HANDOFF})


def names_of(values: Iterator[Any] | Any) -> frozenset[str]:
    """Variables read by `set:` / `with:` values (templates, expressions or literals)."""
    names: set[str] = set()
    for v in values:
        if isinstance(v, Template | Expression):
            names |= v.names
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class HandoffSpec:
    queue: str | None = None
    priority: str = "normal"
    reason: str | None = None


@dataclass(eq=False, slots=True)
class Step:
    key: str
    path: Path
    edges: dict[str, str] = field(default_factory=dict)

    kind = "step"

    def reads(self) -> frozenset[str]:
        """Root variable names this step's templates and conditions read."""
        return frozenset()

    def assigns(self, label: str) -> frozenset[str]:
        """Variables set when the step leaves along the edge `label`."""
        return frozenset()

    @property
    def waits(self) -> bool:
        """Does the step stop and wait for the shopper (or a person)?"""
        return False


@dataclass(eq=False, slots=True)
class Say(Step):
    text: Text = field(default_factory=lambda: Text.of(""))
    kind = "say"

    def reads(self) -> frozenset[str]:
        return self.text.names


@dataclass(eq=False, slots=True)
class Option:
    id: str
    label: Text
    action: str  # goto | flow | url | handoff | end
    value: str | None = None  # the step key, flow name, url or resolution
    condition: Expression | None = None
    handoff: HandoffSpec | None = None
    path: Path = ()


@dataclass(eq=False, slots=True)
class Menu(Step):
    text: Text = field(default_factory=lambda: Text.of(""))
    options: list[Option] = field(default_factory=list)
    kind = "menu"

    def reads(self) -> frozenset[str]:
        names = set(self.text.names)
        for o in self.options:
            names |= o.label.names
            if o.condition is not None:
                names |= o.condition.names
        return frozenset(names)

    @property
    def waits(self) -> bool:
        return True


@dataclass(eq=False, slots=True)
class Choice:
    value: str
    label: Text


@dataclass(eq=False, slots=True)
class ChoicesFrom:
    items: Expression
    label: Template
    value: Template


@dataclass(eq=False, slots=True)
class Ask(Step):
    var: str = ""
    prompt: Text = field(default_factory=lambda: Text.of(""))
    validator: Validator | None = None  # None: one_of over the choices
    choices: list[Choice] = field(default_factory=list)
    choices_from: ChoicesFrom | None = None
    retry: list[Text] = field(default_factory=list)
    max_tries: int = 3
    kind = "ask"

    def reads(self) -> frozenset[str]:
        names = set(self.prompt.names)
        for t in self.retry:
            names |= t.names
        for c in self.choices:
            names |= c.label.names
        if self.choices_from is not None:
            names |= self.choices_from.items.names
        return frozenset(names)

    def assigns(self, label: str) -> frozenset[str]:
        return frozenset({self.var}) if label == "next" else frozenset()

    @property
    def waits(self) -> bool:
        return True


@dataclass(eq=False, slots=True)
class Call(Step):
    action: str = ""
    args: dict[str, Template | Expression | Any] = field(default_factory=dict)
    save_as: str | None = None
    timeout: float = 5.0
    kind = "call"

    def reads(self) -> frozenset[str]:
        return names_of(self.args.values())

    def assigns(self, label: str) -> frozenset[str]:
        return frozenset({self.save_as}) if label == "next" and self.save_as else frozenset()


@dataclass(eq=False, slots=True)
class Switch(Step):
    subject: Expression | None = None
    cases: dict[str, str] = field(default_factory=dict)  # case value (as text) -> edge label
    kind = "switch"

    def reads(self) -> frozenset[str]:
        return self.subject.names if self.subject else frozenset()


@dataclass(eq=False, slots=True)
class If(Step):
    condition: Expression | None = None
    kind = "if"

    def reads(self) -> frozenset[str]:
        return self.condition.names if self.condition else frozenset()

    def assigns(self, label: str) -> frozenset[str]:
        # `if: order is defined` proves `order` set on the `then` branch.
        return self.condition.proves if label == "then" and self.condition else frozenset()


@dataclass(eq=False, slots=True)
class Set(Step):
    values: dict[str, Template | Expression | Any] = field(default_factory=dict)
    kind = "set"

    def reads(self) -> frozenset[str]:
        return names_of(self.values.values())

    def assigns(self, label: str) -> frozenset[str]:
        return frozenset(self.values)


@dataclass(eq=False, slots=True)
class Goto(Step):
    kind = "goto"


@dataclass(eq=False, slots=True)
class Link(Step):
    flow: str = ""
    kind = "link"


@dataclass(eq=False, slots=True)
class Handoff(Step):
    spec: HandoffSpec = field(default_factory=HandoffSpec)
    kind = "handoff"

    @property
    def waits(self) -> bool:
        return True


# The answers of a `csat` step: (option id, score) per scale; the labels are system texts.
CSAT_SCALES: dict[str, tuple[tuple[str, int], ...]] = {
    "yes_no": (("yes", 1), ("no", 0)),
    "five": tuple((str(n), n) for n in range(1, 6)),
}
# The answers with their own exit, per scale (`on_yes`, `on_no`; `on_low`: a score of 1 or 2).
CSAT_EXITS: dict[str, tuple[str, ...]] = {"yes_no": ("yes", "no"), "five": ("low",)}


def csat_exit(scale: str, score: int) -> str:
    """The edge label of an answer's own exit (the step may not have it: then `next`)."""
    if scale == "yes_no":
        return "yes" if score else "no"
    return "low" if score <= 2 else "next"


@dataclass(eq=False, slots=True)
class Csat(Step):
    """Ask the shopper's verdict ("Did this solve it?" yes/no, or 1-5) as buttons."""

    scale: str = "yes_no"
    prompt: Text | None = None  # None: the engine's question for the scale, in every locale
    kind = "csat"

    def reads(self) -> frozenset[str]:
        return self.prompt.names if self.prompt is not None else frozenset()

    @property
    def waits(self) -> bool:
        return True


@dataclass(eq=False, slots=True)
class End(Step):
    resolution: str = "resolved"
    kind = "end"


# -- the registry of step kinds ---------------------------------------------------------------
# Adding a kind: its class above, one entry here, a lowering in the compiler (a test checks
# that every kind has one and that the JSON Schema knows it). Every `match` over `AnyStep` ends
# in `assert_never`, so mypy then names each place that must learn the new kind.

AnyStep = Say | Menu | Ask | Call | Switch | If | Set | Goto | Link | Handoff | Csat | End


@dataclass(frozen=True, slots=True)
class StepKind:
    key: str  # the YAML key that names the kind (`say: ...`)
    cls: type[Step]
    falls_through: bool  # without `next:` it continues with the step below it


STEP_KINDS: tuple[StepKind, ...] = (
    StepKind("say", Say, True),
    StepKind("menu", Menu, False),
    StepKind("ask", Ask, True),
    StepKind("call", Call, True),
    StepKind("switch", Switch, True),
    StepKind("if", If, True),
    StepKind("set", Set, True),
    StepKind("goto", Goto, False),
    StepKind("link", Link, True),
    StepKind("handoff", Handoff, True),
    StepKind("csat", Csat, True),
    StepKind("end", End, False),
)
KIND_KEYS: tuple[str, ...] = tuple(k.key for k in STEP_KINDS)


@dataclass(eq=False, slots=True)
class Flow:
    name: str
    file: str
    title: Text
    locales: tuple[str, ...]
    start: str
    steps: dict[str, AnyStep]
    source: SourceMap
    version: str

    @property
    def default_locale(self) -> str:
        return self.locales[0]

    def edges(self) -> Iterator[tuple[AnyStep, str, str]]:
        for step in self.steps.values():
            for label, target in step.edges.items():
                yield step, label, target


# -- actions the project declares (`actions:` in flowengine.yaml, docs/actions.md) ------------


@dataclass(frozen=True, slots=True)
class Env:
    """`${NAME}` in a request header: the server's environment variable, read at each call."""

    name: str


@dataclass(frozen=True, slots=True)
class RequestText:
    """A string of a declared request, cut into literal text, `{{ expression }}`s over the
    call's arguments and `${NAME}`s. They stay apart, so neither is ever read as the other: a
    value the shopper typed is never looked up in the environment, a secret never evaluated."""

    pieces: tuple[str | Expression | Env, ...]

    @property
    def names(self) -> frozenset[str]:
        """The arguments it reads."""
        return names_of(p for p in self.pieces if isinstance(p, Expression))

    @property
    def env(self) -> frozenset[str]:
        return frozenset(p.name for p in self.pieces if isinstance(p, Env))

    @property
    def single(self) -> Expression | None:
        """The expression, when the text is exactly one `{{ expression }}` (it keeps its type)."""
        only = self.pieces[0] if len(self.pieces) == 1 else None
        return only if isinstance(only, Expression) else None


@dataclass(eq=False, slots=True)
class DeclaredAction:
    """An HTTP request the project declares as an action, compiled (runs: actions/declared.py)."""

    name: str
    required: frozenset[str]
    optional: frozenset[str]
    method: str
    url: RequestText
    headers: dict[str, RequestText]
    body: Any  # JSON-like, its strings RequestText; None: no body
    timeout: float
    ok: frozenset[int]
    not_found: frozenset[int]
    keep: dict[str, tuple[str, ...]]  # result field -> its path in the JSON answer
    description: str = ""

    @property
    def env(self) -> frozenset[str]:
        """The environment variables its headers read."""
        return frozenset().union(*(h.env for h in self.headers.values()))


@dataclass(frozen=True, slots=True)
class ProjectSettings:
    start: str = "main"
    locales: tuple[str, ...] = ("en",)
    handoff_queue: str = "general"
    handoff_priority: str = "normal"
    on_offline: str | None = None  # a flow to run when no agent is available
    on_timeout: str | None = None
    handoff_csat: bool = False  # ask the shopper 1-5 about the person after an agent closes


@dataclass(eq=False, slots=True)
class Project:
    """All flows of a project, compiled and checked together."""

    flows: dict[str, Flow]
    settings: ProjectSettings
    version: str
    actions: dict[str, DeclaredAction] = field(default_factory=dict)  # from flowengine.yaml

    @property
    def start(self) -> Flow:
        return self.flows[self.settings.start]
