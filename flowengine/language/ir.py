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

from ..intents import IntentIndex, build_index
from .source import Path, SourceMap
from .templates import Expression, Template
from .text import Text
from .validators import Validator

END = "end"
HANDOFF = "handoff"
RESERVED_TARGETS = frozenset({END, HANDOFF})

# `intents:` of a flow or a menu option: locale -> example phrases a shopper might type.
Examples = dict[str, tuple[str, ...]]


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
    values: dict[str, Template | Expression | Any] = field(default_factory=dict)  # `set:`
    intents: Examples = field(default_factory=dict)  # typed text like these picks the option


@dataclass(eq=False, slots=True)
class Menu(Step):
    text: Text = field(default_factory=lambda: Text.of(""))
    options: list[Option] = field(default_factory=list)
    kind = "menu"

    def reads(self) -> frozenset[str]:
        names = set(self.text.names)
        for o in self.options:
            names |= o.label.names | names_of(o.values.values())
            if o.condition is not None:
                names |= o.condition.names
        return frozenset(names)

    def assigns(self, label: str) -> frozenset[str]:
        option = next((o for o in self.options if f"option:{o.id}" == label), None)
        return frozenset(option.values) if option is not None else frozenset()

    @property
    def waits(self) -> bool:
        return True


@dataclass(eq=False, slots=True)
class Choice:
    value: str
    label: Text
    condition: Expression | None = None  # `if:`: offered only when it holds


@dataclass(eq=False, slots=True)
class ChoicesFrom:
    items: Expression
    label: Template
    value: Template
    condition: Expression | None = None  # `if:`, read with `item` set to each item

    @property
    def names(self) -> frozenset[str]:
        """What it reads besides `item`."""
        names = self.items.names | self.label.names | self.value.names
        if self.condition is not None:
            names |= self.condition.names
        return names - {ITEM}


ITEM = "item"  # the variable `choices_from.label`, `.value` and `.if` read each item as


@dataclass(frozen=True, slots=True)
class DateBounds:
    """`validate: {date: {past: true}}`: the days from today an answer may be (None: no bound)."""

    min_days: int | None = None
    max_days: int | None = None

    def refusal(self, days_from_today: int) -> str | None:
        """`past`, `future` or `range` when the answer is out of bounds; None when it is in."""
        low, high = self.min_days, self.max_days
        if low is not None and days_from_today < low:
            return "future" if low == 0 else "range"  # "from today on", or a window
        if high is not None and days_from_today > high:
            return "past" if high == 0 else "range"  # "up to today", or a window
        return None


def label_var(var: str) -> str:
    """Where an `ask` with choices keeps the label the shopper saw for their answer."""
    return f"{var}_label"


@dataclass(eq=False, slots=True)
class Ask(Step):
    var: str = ""
    prompt: Text = field(default_factory=lambda: Text.of(""))
    validator: Validator | None = None  # None: one_of over the choices
    choices: list[Choice] = field(default_factory=list)
    choices_from: ChoicesFrom | None = None
    retry: list[Text] = field(default_factory=list)
    max_tries: int = 3
    date_bounds: DateBounds | None = None  # `validate: {date: {...}}`
    kind = "ask"

    def reads(self) -> frozenset[str]:
        names = set(self.prompt.names)
        for t in self.retry:
            names |= t.names
        for c in self.choices:
            names |= c.label.names
            if c.condition is not None:
                names |= c.condition.names
        if self.choices_from is not None:
            names |= self.choices_from.names
        return frozenset(names)

    @property
    def has_choices(self) -> bool:
        return bool(self.choices) or self.choices_from is not None

    def assigns(self, label: str) -> frozenset[str]:
        if label != "next":
            return frozenset()
        if self.has_choices:
            return frozenset({self.var, label_var(self.var)})
        return frozenset({self.var})

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
    # `texts:` tables for the `translate` filter: name -> value -> locale -> text.
    texts: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    intents: Examples = field(default_factory=dict)  # typed text like these starts the flow
    titled: bool = False  # `title:` was written (else `title` is the flow's name)

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
    misses_before_person: int = 2  # unmatched texts in a row before "talk to a person" is offered
    keep_unmatched: bool = False  # `text_unmatched` carries the text, masked (opt-in)


@dataclass(eq=False, slots=True)
class Project:
    """All flows of a project, compiled and checked together."""

    flows: dict[str, Flow]
    settings: ProjectSettings
    version: str
    actions: dict[str, DeclaredAction] = field(default_factory=dict)  # from flowengine.yaml
    intents: Intents = field(init=False)

    def __post_init__(self) -> None:
        # Built once, with the project: matching a typed text is then a lookup and a dot product.
        self.intents = Intents.of(self)

    @property
    def start(self) -> Flow:
        return self.flows[self.settings.start]


# -- typed text: what the intent matcher can route to ------------------------------------------

FLOW_INTENT = "flow:"  # intent ids in an index: `flow:<flow name>` or `option:<option id>`
OPTION_INTENT = "option:"


@dataclass(eq=False, slots=True)
class Intents:
    """The project's intent indexes: every flow's `intents:` in one, and for each menu with
    option intents one more that holds its options beside every flow (so their scores compare).
    Intent ids are `flow:<name>` and `option:<id>`."""

    flows: IntentIndex | None  # None: no flow has intents
    menus: dict[tuple[str, str], IntentIndex]  # (flow, menu step key) -> options and flows
    titles: dict[str, Text]  # flow -> its name in a clarifying menu (absent: it has none)

    @classmethod
    def of(cls, project: Project) -> Intents:
        flows = {f"{FLOW_INTENT}{n}": f.intents for n, f in project.flows.items() if f.intents}
        menus: dict[tuple[str, str], IntentIndex] = {}
        for name, flow in project.flows.items():
            for step in flow.steps.values():
                if isinstance(step, Menu) and any(o.intents for o in step.options):
                    own = {f"{OPTION_INTENT}{o.id}": o.intents for o in step.options if o.intents}
                    menus[(name, step.key)] = build_index({**own, **flows})
        return cls(build_index(flows) if flows else None, menus, _titles(project))

    def index_at(self, flow: str, step: str) -> IntentIndex | None:
        """The index typed text is matched against at a step."""
        return self.menus.get((flow, step), self.flows)


def _titles(project: Project) -> dict[str, Text]:
    """A flow's name for shoppers: its `title:`, else the label of the start flow's menu option
    that leads to it."""
    titles = {name: flow.title for name, flow in project.flows.items() if flow.titled}
    start = project.flows.get(project.settings.start)
    for step in start.steps.values() if start is not None else ():
        if isinstance(step, Menu):
            for o in step.options:
                if o.action == "flow" and o.value is not None:
                    titles.setdefault(o.value, o.label)
    return titles
