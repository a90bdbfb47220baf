"""The transition function: `step(project, state, event, now) -> Result`. Pure.

No I/O, no clock (the caller passes `now`), no randomness, nothing mutated: a new `State` comes
back with the messages to show, the effects for the shell to run (call an action, enqueue a
handoff), analytics events, and an error when the event does not fit the state. It never raises
on shopper input; a bad event returns an error and the state unchanged.

One event may run several steps (say -> call) until the conversation waits again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal, assert_never

from ..intents import Clarify, IntentIndex, Match
from ..intents.matcher import decide
from ..intents.normalize import masked
from ..language import ir
from ..language.formatting import days_between, today_of
from ..language.templates import CHAIN, TABLES, TODAY, Expression, Template
from ..language.text import Text as LocalText
from ..language.text import fallback_chain, normalise_locale, served_locale
from ..language.validators import MAX_ANSWER
from . import model as m
from .system_text import TEXTS

# `handoff_requested.reason`: what led to the handoff (docs/events.md lists them).
HandoffCause = Literal["asked", "action_error", "no_match", "unsolved", "flow"]

MAX_TEXT = 2000  # characters of shopper text the engine accepts in one message
MAX_STEPS_PER_EVENT = 200  # a guard behind the validator's E111 check


def start(
    project: ir.Project,
    *,
    now: float,
    locale: str = "",
    context: Mapping[str, Any] | None = None,
    flow: str | None = None,
) -> m.Result:
    """A new conversation, run up to its first wait."""
    settings = project.settings
    state = m.State(
        version=project.version,
        locale=normalise_locale(locale) if locale else settings.locales[0],
        context=_clean_context(context or {}),
    )
    name = flow if flow in project.flows else settings.start
    run = _Run(project, state, now)
    run.emit("session_started", flow=name)
    run.emit("conversation_started", flow=name)
    try:
        run.enter_flow(name)
    except _Refused as refused:
        return m.Result(state, error=m.EngineError(refused.code, refused.message))
    return run.result()


def step(project: ir.Project, state: m.State, event: m.Event, now: float) -> m.Result:
    """Apply one event to a session."""
    try:
        return _dispatch(project, state, event, now)
    except _Refused as refused:
        return m.Result(state, error=m.EngineError(refused.code, refused.message))


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _dispatch(project: ir.Project, state: m.State, event: m.Event, now: float) -> m.Result:
    flow = project.flows.get(state.flow) if state.flow else None
    stale = state.flow and (flow is None or (state.step and state.step not in flow.steps))
    if stale and not isinstance(event, m.Restart):  # restart is the way out of a stale state
        raise _Refused("flow_gone", "this conversation's flow is no longer available; restart")
    if isinstance(event, m.Choose | m.Text) and not isinstance(
        event.option if isinstance(event, m.Choose) else event.text, str
    ):
        raise _Refused("bad_event", "option and text must be strings")
    run = _Run(project, state, now)
    match event:
        case m.SetContext(context=context):
            run.context = _clean_context(context)  # allowed in any state, even ended
        case m.Restart():
            run.restart()
        case m.Choose(option=option) if state.waiting == "ended" and state.rate is not None:
            run.rate_person(option)
        case m.Text(text=text) if state.waiting == "ended" and state.rate is not None:
            run.rate_person(_typed_option(state.options, text) or text)
        case _ if state.waiting == "ended":
            raise _Refused("conversation_ended", "this conversation has ended; send restart")
        case m.AskForPerson():
            run.ask_for_person()
        case m.Choose(option=option):
            run.choose(option)
        case m.Text(text=text):
            run.text(text)
        case m.ActionResult():
            run.action_result(event)
        case m.HandoffUpdate(outcome=outcome, hours=hours, agent=agent):
            run.handoff_update(outcome, hours, agent)
        case m.SetContext():  # pragma: no cover - matched first; here for the type checker
            pass
        case _:
            assert_never(event)
    return run.result()


def _clean_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """Only JSON-like values of bounded size reach templates."""
    out: dict[str, Any] = {}
    for key in ("shopper", "page", "context"):
        value = context.get(key)
        if isinstance(value, dict):
            out[key] = {
                str(k)[:64]: v
                for k, v in list(value.items())[:32]
                if isinstance(v, str | int | float | bool | type(None))
                and (not isinstance(v, str) or len(v) <= 500)
            }
    return out


class _Run:
    """The working copy of one transition; `result()` freezes it."""

    def __init__(self, project: ir.Project, state: m.State, now: float) -> None:
        self.project = project
        self.before = state
        self.now = now
        self.today = today_of(now)  # `today` in templates; a run has one clock reading
        self.flow_name = state.flow
        self.key = state.step
        self.vars = dict(state.vars)
        self.stack = list(state.stack)
        self.waiting: m.Waiting = state.waiting
        self.options = state.options
        self.tries = state.tries
        self.pending = state.pending
        self.counter = state.counter
        self.handoff = state.handoff
        self.resolution = state.resolution
        self.person = state.person
        self.rate = state.rate
        self.misses = state.misses
        self.clarify = state.clarify
        self.clarify_text = state.clarify_text
        self.locale = state.locale
        self.context = state.context
        self.messages: list[m.Message] = []
        self.effects: list[m.Effect] = []
        self.events: list[dict[str, Any]] = []
        self.visited: list[tuple[str, str, str]] = []
        self.budget = MAX_STEPS_PER_EVENT
        # What led to a handoff in this transition (`handoff_requested.reason`, docs/events.md):
        # the event sets it, an action's failure or a failed answer refines it.
        self.cause: HandoffCause = "flow"

    # -- helpers -------------------------------------------------------------------------
    @property
    def flow(self) -> ir.Flow:
        return self.project.flows[self.flow_name]

    @property
    def current(self) -> ir.AnyStep:
        return self.flow.steps[self.key]

    def variables(self) -> dict[str, Any]:
        ctx = self.context
        return {
            **self.vars,
            "shopper": ctx.get("shopper", {}),
            "page": ctx.get("page", {}),
            "context": ctx.get("context", {}),
            "handoff": ctx.get("handoff", {}),
            "locale": self.locale,
            TODAY: self.today,
            CHAIN: self.chain(),
            TABLES: self.flow.texts if self.flow_name else {},
        }

    def chain(self) -> tuple[str, ...]:
        default = self.flow.default_locale if self.flow_name else self.project.settings.locales[0]
        return fallback_chain(self.locale, default)

    def render(self, text: LocalText) -> tuple[str, str]:
        return text.render(self.chain(), self.variables())

    def say(
        self,
        text: LocalText,
        *,
        sender: Literal["bot", "system"] = "bot",
        options: tuple[dict[str, str], ...] = (),
        input_: dict[str, Any] | None = None,
        label_locales: tuple[str, ...] = (),
        csat: str | None = None,
        variables: dict[str, Any] | None = None,
    ) -> None:
        """`variables`: those the caller already built for this message (its labels)."""
        body, loc = text.render(self.chain(), variables or self.variables(), markup=True)
        # Report a fallback in a button label as the message's own (tests catch both).
        wanted = self.chain()[0]
        loc = next((x for x in (loc, *label_locales) if x not in (wanted, "*")), loc)
        self.messages.append(m.Message(sender, body, options, input_, loc, csat))

    def echo(self, text: str) -> None:
        self.messages.append(m.Message("shopper", text))

    def emit(self, kind: str, /, **data: Any) -> None:
        version = self.before.version or self.project.version
        self.events.append(
            {
                "type": kind,
                "at": self.now,
                **data,
                "version": version,
                "locale": served_locale(self.locale, self.project.settings.locales),
            }
        )

    def result(self) -> m.Result:
        # Candidates count only while their clarifying menu is what can be clicked.
        clarify = tuple(c for c in self.clarify if c[0] in dict(self.options))
        state = m.State(
            version=self.before.version if self.before.version else self.project.version,
            locale=self.locale,
            flow=self.flow_name,
            step=self.key,
            waiting=self.waiting,
            vars=self.vars,
            context=self.context,
            stack=tuple(self.stack),
            options=self.options,
            tries=self.tries,
            pending=self.pending,
            counter=self.counter,
            handoff=self.handoff,
            resolution=self.resolution,
            person=self.person,
            rate=self.rate,
            misses=self.misses,
            clarify=clarify,
            clarify_text=self.clarify_text if clarify else "",
        )
        return m.Result(
            state,
            tuple(self.messages),
            tuple(self.effects),
            tuple(self.events),
            None,
            tuple(self.visited),
        )

    # -- movement ------------------------------------------------------------------------
    def enter_flow(self, name: str) -> None:
        self.flow_name = name
        self.emit("flow_started", flow=name)
        self.go(self.project.flows[name].start, None)

    def follow(self, label: str) -> None:
        """Leave the current step along the edge `label`."""
        self.visited.append((self.flow_name, self.key, label))
        self.go(self.current.edges.get(label, ir.END), self.key)

    def go(self, target: str, came_from: str | None) -> None:
        """Run steps from `target` until the conversation waits or ends. `came_from`: the step
        of this flow run left to get there (None: the flow run starts here)."""
        while True:
            self.budget -= 1
            if self.budget < 0:
                raise _Refused("loop_limit", "the flow ran too many steps without waiting")
            if target == ir.END:
                self.finish_flow(None)
                return
            if target == ir.HANDOFF:
                self.start_handoff(
                    self.project.settings.handoff_queue,
                    self.project.settings.handoff_priority,
                    f"{self.flow_name}.{self.key}",
                    back=None,
                )
                return
            self.key = target
            step = self.current
            self.emit("step_entered", flow=self.flow_name, step=step.key, **{"from": came_from})
            nxt = self.run_step(step)
            if nxt is None:
                return
            self.visited.append((self.flow_name, step.key, nxt))
            target = step.edges.get(nxt, ir.END)
            came_from = step.key

    def finish_flow(self, resolution: str | None) -> None:
        """End the current flow: back to the flow that linked it, or end the conversation."""
        self.emit("flow_ended", flow=self.flow_name, resolution=resolution)
        if self.stack:
            child = self.flow_name
            self.flow_name, after = self.stack.pop()
            self.go(after, self.link_to(child, after))
            return
        self.end_conversation(resolution)

    def end_conversation(self, resolution: str | None) -> None:
        self.waiting = "ended"
        self.options = ()
        self.resolution = resolution
        self.emit(
            "conversation_ended", flow=self.flow_name, resolution=resolution, person=self.person
        )

    def link_to(self, child: str, after: str) -> str | None:
        """The `link:` step of the current flow that ran `child` and continues at `after`."""
        return next(
            (
                s.key
                for s in self.flow.steps.values()
                if isinstance(s, ir.Link)
                and s.flow == child
                and s.edges.get("next", ir.END) == after
            ),
            None,
        )

    # -- steps: each returns the edge label to follow, or None to wait ----------------------
    def run_step(self, step: ir.AnyStep) -> str | None:
        match step:
            case ir.Say():
                self.say(step.text)
                return "next"
            case ir.Menu():
                self.show_menu(step)
                return None
            case ir.Ask():
                self.show_ask(step, step.prompt)
                self.tries = 0
                return None
            case ir.Call():
                self.counter += 1
                self.pending = f"{self.counter}"
                args = {k: self.value(v) for k, v in step.args.items()}
                self.effects.append(m.CallAction(self.pending, step.action, args, step.timeout))
                self.waiting = "action"
                self.options = ()
                return None
            case ir.Switch():
                subject = step.subject.evaluate(self.variables()) if step.subject else None
                label = step.cases.get(str(subject))
                return label or "default"
            case ir.If():
                holds = step.condition.truth(self.variables()) if step.condition else False
                return "then" if holds else "else"
            case ir.Set():
                for name, v in step.values.items():
                    self.vars[name] = self.value(v)
                return "next"
            case ir.Goto():
                return "next"
            case ir.Link():
                if step.flow not in self.project.flows:
                    return "next"
                self.stack.append((self.flow_name, step.edges.get("next", ir.END)))
                self.visited.append((self.flow_name, step.key, "next"))
                self.emit("flow_linked", flow=step.flow, parent=self.flow_name)
                self.flow_name = step.flow
                self.go(self.project.flows[step.flow].start, None)
                return None
            case ir.Handoff():
                flow = self.flow_name
                self.start_handoff(
                    step.spec.queue or self.project.settings.handoff_queue,
                    step.spec.priority,
                    step.spec.reason,
                    back=(flow, step.edges["next"]),
                    offline=_edge(flow, step, "offline"),
                    timeout=_edge(flow, step, "timeout"),
                )
                return None
            case ir.Csat():
                self.ask_verdict(step.scale, step.prompt or TEXTS[f"csat.{step.scale}"])
                return None
            case ir.End():
                self.finish_flow(step.resolution)
                return None
            case _:
                assert_never(step)

    def value(self, v: Any) -> Any:
        if isinstance(v, Expression):
            return v.evaluate(self.variables())
        if isinstance(v, Template):
            return v.render(self.variables())
        return v

    def visible_options(
        self, step: ir.Menu, variables: dict[str, Any] | None = None
    ) -> list[ir.Option]:
        """The menu's options whose `if:` holds now."""
        if all(o.condition is None for o in step.options):
            return list(step.options)
        variables = variables or self.variables()
        return [o for o in step.options if o.condition is None or o.condition.truth(variables)]

    def show_menu(self, step: ir.Menu, *, offer_person: bool = False) -> None:
        """The menu's text and options (`offer_person`: with "Talk to a person" added, unless
        an option already leads to one)."""
        variables = self.variables()
        chain = self.chain()
        shown: list[dict[str, str]] = []
        locales: list[str] = []
        visible = self.visible_options(step, variables)
        for o in visible:
            label, loc = o.label.render(chain, variables)
            locales.append(loc)
            item = {"id": o.id, "label": label}
            if o.action == "url" and o.value:
                item["url"] = o.value
            shown.append(item)
        if offer_person and not any(o.action == "handoff" for o in visible):
            label, loc = self.render(TEXTS["intents.person"])
            shown.append({"id": m.OFFER_PERSON, "label": label})
            locales.append(loc)
        self.say(step.text, options=tuple(shown), label_locales=tuple(locales), variables=variables)
        self.waiting = "click"
        self.options = tuple((o["id"], o["label"]) for o in shown)
        self.clarify = ()

    def ask_choices(self, step: ir.Ask) -> tuple[list[dict[str, str]], tuple[str, ...]]:
        """Choices from data first (`choices_from`), then the static ones, with their locales."""
        variables = self.variables()
        out: list[dict[str, str]] = []
        source = step.choices_from
        items = source.items.evaluate(variables) if source is not None else None
        if source is not None and isinstance(items, list | tuple):
            for item in items[:50]:
                scope = {**variables, ir.ITEM: item}
                if source.condition is not None and not source.condition.truth(scope):
                    continue
                value = source.value.render(scope)
                if value:
                    out.append({"id": value[:100], "label": source.label.render(scope)})
        locales = []
        for c in step.choices:
            if c.condition is not None and not c.condition.truth(variables):
                continue
            label, loc = c.label.render(self.chain(), variables)
            out.append({"id": c.value, "label": label})
            locales.append(loc)
        return out, tuple(locales)

    def show_ask(self, step: ir.Ask, text: LocalText) -> None:
        choices, label_locales = self.ask_choices(step)
        kind = step.validator.input_kind if step.validator else None
        input_ = {"kind": kind, "var": step.var} if kind else None
        self.say(text, options=tuple(choices), input_=input_, label_locales=label_locales)
        self.waiting = "text" if kind else "click"
        self.options = tuple((c["id"], c["label"]) for c in choices)

    def ask_verdict(self, scale: str, question: LocalText) -> None:
        """A csat question: its answers as buttons (labels in the shopper's language)."""
        shown: list[dict[str, str]] = []
        locales: list[str] = []
        for oid, _score in ir.CSAT_SCALES[scale]:
            label_text = TEXTS.get(f"csat.{oid}")
            label, loc = self.render(label_text) if label_text is not None else (oid, "*")
            shown.append({"id": oid, "label": label})
            locales.append(loc)
        self.say(question, options=tuple(shown), label_locales=tuple(locales), csat=scale)
        self.options = tuple((o["id"], o["label"]) for o in shown)
        if self.waiting != "ended":
            self.waiting = "click"

    def verdict(self, scale: str, option: str, agent: str | None) -> int:
        """Record the shopper's answer to a csat question; its score."""
        score = dict(ir.CSAT_SCALES[scale])[option]
        self.emit(
            "csat_given",
            flow=self.flow_name,
            step=self.key,
            scale=scale,
            score=score,
            agent=agent,
        )
        # A handoff this answer leads to: the shopper said the flow did not solve it.
        self.cause = "unsolved" if ir.csat_exit(scale, score) in ("no", "low") else "asked"
        return score

    def rate_person(self, option: str) -> None:
        """The 1-5 answer about the person who just closed the chat (the conversation has
        ended; answering or not changes nothing else)."""
        label = dict(self.options).get(option)
        if label is None:
            raise _Refused("unknown_option", f"'{option[:40]}' is not one of the options shown")
        self.echo(label)
        self.verdict("five", option, self.rate)
        self.rate = None
        self.options = ()
        self.say(TEXTS["csat.thanks"])

    # -- events --------------------------------------------------------------------------
    def choose(self, option: str) -> None:
        if self.waiting != "click" and not (self.waiting == "text" and self.options):
            raise _Refused(*_not_now(self.waiting, "a click"))
        label = dict(self.options).get(option)
        if label is None:
            raise _Refused("unknown_option", f"'{option[:40]}' is not one of the options shown")
        self.echo(label)
        candidates = dict(self.clarify)
        self.clarify = ()
        if option in candidates:  # a candidate of a clarifying menu
            self.route(option, candidates[option], clarified=True)
        elif option == m.SOMETHING_ELSE:
            self.miss(TEXTS["intents.rephrase"], self.clarify_text)
        elif option == m.OFFER_PERSON:
            self.misses = 0
            self.ask_for_person()
        else:
            self.misses = 0
            self.pick(option)

    def pick(self, option: str) -> None:
        """What clicking `option` of the current step does."""
        step = self.current
        if isinstance(step, ir.Csat):
            score = self.verdict(step.scale, option, None)
            exit_ = ir.csat_exit(step.scale, score)
            self.follow(exit_ if exit_ in step.edges else "next")
            return
        self.emit("option_chosen", flow=self.flow_name, step=step.key, option=option)
        self.cause = "asked"  # a click that leads straight to a person asked for one
        if isinstance(step, ir.Ask):
            self.accept_answer(step, option)
            return
        assert isinstance(step, ir.Menu)
        chosen = next(o for o in step.options if o.id == option)
        for name, v in chosen.values.items():  # the option's `set:`, before it goes anywhere
            self.vars[name] = self.value(v)
        match chosen.action:
            case "goto" | "end":
                if chosen.action == "end":
                    self.visited.append((self.flow_name, step.key, f"option:{option}"))
                    self.finish_flow(chosen.value)
                    return
                self.follow(f"option:{option}")
            case "flow":
                self.visited.append((self.flow_name, step.key, f"option:{option}"))
                self.switch_flow(chosen.value or self.project.settings.start)
            case "url":
                pass  # the widget opens the link; the menu stays
            case "handoff":
                spec = chosen.handoff or ir.HandoffSpec()
                self.visited.append((self.flow_name, step.key, f"option:{option}"))
                self.start_handoff(
                    spec.queue or self.project.settings.handoff_queue,
                    spec.priority,
                    spec.reason,
                    back=(self.flow_name, step.key),
                )

    def text(self, text: str) -> None:
        if len(text) > MAX_TEXT:
            raise _Refused("text_too_long", f"messages are limited to {MAX_TEXT} characters")
        if not text.strip():
            raise _Refused("empty_text", "the message is empty")
        if self.waiting == "agent":
            self.echo(text)
            self.effects.append(m.ForwardToAgent(text))
            return
        if self.waiting == "click" and not isinstance(self.current, ir.Ask):
            # A typed option label counts as the click; at a menu, other text is matched.
            typed = _typed_option(self.options, text)
            menu = self.current
            if typed is not None:
                self.choose(typed)
            elif isinstance(menu, ir.Menu) and self.intent_index() is not None:
                self.echo(text)
                self.match_at_menu(menu, text)
            else:
                raise _Refused("expected_choice", "please choose one of the options")
            return
        if self.waiting not in ("text", "click"):
            raise _Refused(*_not_now(self.waiting, "text"))
        step = self.current
        assert isinstance(step, ir.Ask)
        self.echo(text)
        if step.validator is None:  # one_of: the text must name a choice
            value: Any = _typed_option(self.options, text)
        else:
            value = step.validator.check(text[:MAX_ANSWER])
        refusal = None
        if value is not None and step.date_bounds is not None:
            days = days_between(self.today, value)
            refusal = step.date_bounds.refusal(days) if days is not None else None
        valid = value is not None and refusal is None
        self.emit("text_given", flow=self.flow_name, step=step.key, valid=valid)
        if valid:
            self.accept_answer(step, value)
        elif refusal is None and (other := self.flow_asked_for(text)) is not None:
            self.route(*other, clarified=False)  # not an answer: a question about another flow
        else:
            self.reject_answer(step, f"invalid.date_{refusal}" if refusal else None)

    # -- typed text matched to intents (flowengine.intents) --------------------------------
    def intent_index(self) -> IntentIndex | None:
        return self.project.intents.index_at(self.flow_name, self.key)

    def intent_locale(self) -> str:
        return served_locale(self.locale, self.project.settings.locales)

    def match_at_menu(self, step: ir.Menu, text: str) -> None:
        """Typed text at a menu: pick the option or start the flow it asks for, ask which of
        two it means, or say it was not understood and show the menu again."""
        index = self.intent_index()
        assert index is not None
        visible = {o.id for o in self.visible_options(step)}
        scores = [
            c
            for c in index.scores(text, self.intent_locale())
            if not c.intent.startswith(ir.OPTION_INTENT)
            or c.intent.removeprefix(ir.OPTION_INTENT) in visible
        ]
        answer = decide(scores)  # no scores (too long, no words): no match
        match answer:
            case Match(intent=intent, score=score):
                self.route(intent, score, clarified=False)
            case Clarify(first=first, second=second):
                self.ask_which(step, ((first.intent, first.score), (second.intent, second.score)))
                self.clarify_text = self.kept(text)
            case _:
                self.miss(TEXTS["intents.no_match"], self.kept(text))

    def flow_asked_for(self, text: str) -> tuple[str, float] | None:
        """At an `ask`, an answer that does not fit: the (intent, score) of another flow it
        confidently asks for, if any (not the flow asking, nor one it was linked from)."""
        index = self.project.intents.flows
        if index is None:
            return None
        answer = index.match(text, self.intent_locale())
        here = {self.flow_name, *(f for f, _ in self.stack)}
        if isinstance(answer, Match) and answer.intent.removeprefix(ir.FLOW_INTENT) not in here:
            return answer.intent, answer.score
        return None

    def route(self, intent: str, score: float, *, clarified: bool) -> None:
        """Go where a matched intent leads: its option, or its flow (through the menu's option
        for it when there is one, as a click on it would)."""
        kind, _, target = intent.partition(":")
        self.misses = 0
        self.emit(
            "text_matched",
            flow=self.flow_name,
            step=self.key,
            target=target,
            kind=kind,
            score=round(score, 3),
            clarified=clarified,
        )
        step = self.current
        if kind == "option":
            self.pick(target)
            return
        via = (
            next(
                (
                    o.id
                    for o in self.visible_options(step)
                    if o.action == "flow" and o.value == target
                ),
                None,
            )
            if isinstance(step, ir.Menu)
            else None
        )
        if via is not None:
            self.pick(via)
        else:
            self.switch_flow(target)

    def ask_which(self, step: ir.Menu, candidates: tuple[tuple[str, float], ...]) -> None:
        """A clarifying menu: both candidates and "Something else", at the same step."""
        shown: list[dict[str, str]] = []
        locales: list[str] = []
        for intent, _score in candidates:
            label, loc = self.render(self.intent_label(step, intent))
            shown.append({"id": intent, "label": label})
            locales.append(loc)
        label, loc = self.render(TEXTS["intents.something_else"])
        shown.append({"id": m.SOMETHING_ELSE, "label": label})
        locales.append(loc)
        self.say(TEXTS["intents.clarify"], options=tuple(shown), label_locales=tuple(locales))
        self.options = tuple((o["id"], o["label"]) for o in shown)
        self.clarify = candidates

    def intent_label(self, step: ir.Menu, intent: str) -> LocalText:
        """What a candidate is called in a clarifying menu: its option's label, or its flow's
        title (the name of the flow when it has none; `validate` refuses that, E122)."""
        kind, _, target = intent.partition(":")
        if kind == "option":
            return next(o.label for o in step.options if o.id == target)
        return self.project.intents.titles.get(target) or LocalText.of(target)

    def kept(self, text: str) -> str:
        """The text as `text_unmatched` may carry it: masked, and only when the project opts
        in (`intents.keep_unmatched`); "" otherwise."""
        return masked(text) if self.project.settings.keep_unmatched else ""

    def miss(self, lead: LocalText, kept: str) -> None:
        """Typed text that matched nothing (or "Something else"): say so and show the menu
        again; after `misses_before_person` in a row, with "Talk to a person". `kept`: the
        masked text, when the project keeps unmatched texts."""
        step = self.current
        assert isinstance(step, ir.Menu)
        self.misses += 1
        if kept:
            self.emit("text_unmatched", flow=self.flow_name, step=step.key, text=kept)
        else:
            self.emit("text_unmatched", flow=self.flow_name, step=step.key)
        self.say(lead)
        self.show_menu(step, offer_person=self.misses >= self.project.settings.misses_before_person)

    def switch_flow(self, name: str) -> None:
        """Leave the current flow (and any that linked it) for `name`."""
        self.emit("flow_ended", flow=self.flow_name, resolution=None)
        self.stack.clear()
        self.tries = 0
        self.enter_flow(name)

    def accept_answer(self, step: ir.Ask, value: Any) -> None:
        self.vars[step.var] = value
        if step.has_choices:  # what the shopper saw, for a confirmation that names it
            self.vars[ir.label_var(step.var)] = dict(self.options).get(str(value), str(value))
        self.tries = 0
        self.follow("next")

    def reject_answer(self, step: ir.Ask, reason: str | None = None) -> None:
        self.tries += 1
        if self.tries >= step.max_tries:
            self.tries = 0
            self.cause = "no_match"
            self.follow("fail")
            return
        if reason is not None:  # an answer of the right form, out of bounds: say which bound
            text = TEXTS[reason]
        elif step.retry:
            text = step.retry[min(self.tries - 1, len(step.retry) - 1)]
        else:
            name = step.validator.name if step.validator else "one_of"
            text = TEXTS.get(f"invalid.{name}", TEXTS["invalid.text"])
        self.show_ask(step, text)

    def action_result(self, event: m.ActionResult) -> None:
        if self.waiting != "action" or event.call_id != self.pending:
            raise _Refused("unexpected_result", "no action is waiting for this result")
        step = self.current
        assert isinstance(step, ir.Call)
        self.pending = None
        self.emit(
            "action_finished",
            flow=self.flow_name,
            step=step.key,
            action=step.action,
            outcome=event.outcome,
        )
        if event.outcome == "ok":
            if step.save_as:
                self.vars[step.save_as] = event.data
            self.follow("next")
        elif event.outcome in ("not_found", "throttled") and event.outcome in step.edges:
            self.cause = "no_match"
            self.follow(event.outcome)
        else:  # an error, or an answer the action never gives (the step has no exit for it)
            self.cause = "action_error"
            self.follow("error")

    def ask_for_person(self) -> None:
        if self.waiting == "agent":
            raise _Refused("already_with_agent", "a person has already been asked for")
        if self.waiting == "action":
            raise _Refused("busy", "one moment: still working on the last answer")
        self.emit("handoff_asked", flow=self.flow_name, step=self.key, by="shopper")
        self.cause = "asked"
        self.start_handoff(
            self.project.settings.handoff_queue,
            self.project.settings.handoff_priority,
            "shopper asked",
            back=(self.flow_name, self.key),
        )

    def start_handoff(
        self,
        queue: str,
        priority: str,
        reason: str | None,
        *,
        back: tuple[str, str] | None,
        offline: tuple[str, str] | None = None,
        timeout: tuple[str, str] | None = None,
    ) -> None:
        self.handoff = m.Handoff(
            queue,
            priority,
            reason,
            back,
            offline,
            timeout,
            origin=(self.flow_name, self.key),
            requested_at=self.now,
        )
        self.waiting = "agent"
        self.options = ()
        self.say(TEXTS["handoff.connecting"], sender="system")
        self.emit(
            "handoff_requested",
            flow=self.flow_name,
            step=self.key,
            queue=queue,
            priority=priority,
            reason=self.cause,
            topic=reason,
        )
        top = self.stack[0][0] if self.stack else self.flow_name
        self.effects.append(
            m.RequestHandoff(queue, priority, reason, self.flow_name, self.key, top)
        )

    def handoff_update(self, outcome: m.HandoffOutcome, hours: str = "", agent: str = "") -> None:
        h = self.handoff
        if self.waiting != "agent" or h is None:
            raise _Refused("no_handoff", "this conversation is not with a person")
        self.emit(
            "handoff_" + outcome,
            queue=h.queue,
            flow=self.flow_name,
            **_timing(h, outcome, agent, self.now),
        )
        if outcome in ("offline", "timeout"):
            # What the offline flow may tell the shopper: `handoff.hours`, `handoff.outcome`.
            self.context = {**self.context, "handoff": {"outcome": outcome, "hours": hours}}
        if outcome == "assigned":
            self.handoff = replace(h, assigned=True, assigned_at=self.now, agent=agent or None)
            self.person = True
            return
        self.handoff = None
        if outcome == "closed":
            self.end_conversation("agent")
            person = agent or h.agent
            if self.project.settings.handoff_csat and person:
                self.rate = person
                self.ask_verdict("five", TEXTS["csat.agent"])
            return
        label = {"handed_back": "next"}.get(outcome, outcome)
        if h.origin is not None:
            self.visited.append((h.origin[0], h.origin[1], label))
        if outcome == "handed_back":
            self.say(TEXTS["handoff.back"], sender="system")
            self.resume(h.back)
            return
        explicit = h.offline if outcome == "offline" else h.timeout
        if explicit is not None:
            self.resume(explicit)
            return
        settings = self.project.settings
        fallback = settings.on_offline if outcome == "offline" else settings.on_timeout
        if fallback and fallback in self.project.flows:
            self.stack.clear()
            self.enter_flow(fallback)
            return
        self.say(TEXTS["handoff.unavailable"], sender="system")
        self.finish_flow("not_resolved")

    def resume(self, where: tuple[str, str] | None) -> None:
        if where is None or where[0] not in self.project.flows:
            self.stack.clear()
            self.enter_flow(self.project.settings.start)
            return
        asked = self.before.handoff  # the handoff this resumes from: its step was left last
        origin = asked.origin if asked is not None else None
        self.flow_name = where[0]
        self.go(where[1], origin[1] if origin is not None and origin[0] == where[0] else None)

    def restart(self) -> None:
        if self.waiting not in ("ended", "start"):
            self.emit("conversation_abandoned", flow=self.flow_name, step=self.key)
        if self.waiting == "agent":
            self.effects.append(m.CancelHandoff())
        self.vars = {}
        self.stack = []
        self.tries = 0
        self.pending = None
        self.handoff = None
        self.resolution = None
        self.person = False
        self.rate = None
        self.misses = 0
        self.emit("conversation_started", flow=self.project.settings.start)
        self.enter_flow(self.project.settings.start)


def _typed_option(options: tuple[tuple[str, str], ...], text: str) -> str | None:
    """The option whose label (or id) the shopper typed."""
    wanted = text.strip().casefold()
    return next(
        (oid for oid, label in options if label.casefold() == wanted or oid.casefold() == wanted),
        None,
    )


def _timing(h: m.Handoff, outcome: m.HandoffOutcome, agent: str, now: float) -> dict[str, Any]:
    """The handoff event's own fields: who, and how long it waited or was handled (seconds)."""

    def since(t: float | None) -> float | None:
        return None if t is None else round(max(0.0, now - t), 3)

    match outcome:
        case "assigned":
            return {"agent": agent or None, "waited": since(h.requested_at)}
        case "offline" | "timeout":
            return {"waited": since(h.requested_at)}
        case "closed" | "handed_back":
            return {"agent": agent or h.agent, "handled": since(h.assigned_at)}
        case _:
            assert_never(outcome)


def _edge(flow: str, step: ir.Step, label: str) -> tuple[str, str] | None:
    target = step.edges.get(label)
    return None if target is None else (flow, target)


def _not_now(waiting: str, what: str) -> tuple[str, str]:
    reasons = {
        "action": ("busy", "one moment: still working on the last answer"),
        "agent": ("with_agent", "you are talking with a person; type a message"),
        "text": ("expected_text", "please type your answer"),
        "click": ("expected_choice", "please choose one of the options"),
        "start": ("not_started", "the conversation has not started"),
    }
    return reasons.get(waiting, ("unexpected", f"{what} is not expected now"))
