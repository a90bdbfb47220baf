"""Templates (`{{ order.status }}`) and conditions (`order.total > 50`), run in a sandbox.

Jinja2's ImmutableSandboxedEnvironment: no attribute access to Python internals, no mutation of
values, no `eval`. We add what the sandbox lacks against hostile input: every operation that can
turn a short expression into a huge value is bounded *before* it runs (`*` repetition, `**`,
`%` and `str.format` widths, `join`'s separator, `sum` of non-numbers), there is no `range`, and
rendered text is cut at MAX_RENDERED characters. A bound that trips raises SecurityError: a
render shows nothing for that text instead of stopping the conversation, and an expression that
reads no variable (`'%0300000000d' % 1`) is run once at load time so the author hears of it then.
Shopper text is only ever *data* passed to a template, never compiled as one.

Templates are compiled once, when a flow is loaded; the engine only renders them.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import (
    ChainableUndefined,
    meta,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2.environment import Environment
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter

from . import formatting

# The limits (docs/flow-language.md, "Limits in templates"). The largest shipped message is under
# 600 bytes; 4,000 characters of Thai are 12 KB, which still fits the widget's 16 KiB frames.
MAX_RENDERED = 4000  # characters of any rendered text or computed string value
MAX_SEQUENCE = 10_000  # characters or items a repetition or a `join` separator may build
MAX_POWER = 10**12  # largest result of `**`
MAX_WIDTH = 100  # largest width or precision in a `%` or `str.format` format


class _SilentUndefined(ChainableUndefined):
    """An unset variable renders as nothing and is false; the validator warns about it."""

    __slots__ = ()

    def __str__(self) -> str:
        return ""


# Filters and methods that cannot turn a short input into a huge output.
SAFE_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "default",
        "d",
        "e",
        "escape",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "count",
        "lower",
        "max",
        "min",
        "round",
        "sort",
        "string",
        "sum",
        "title",
        "trim",
        "truncate",
        "unique",
        "upper",
        "list",
        "selectattr",
        "rejectattr",
        "map",
        "select",
        "reject",
    }
)
SAFE_METHODS = frozenset(
    {
        "upper",
        "lower",
        "title",
        "capitalize",
        "strip",
        "lstrip",
        "rstrip",
        "startswith",
        "endswith",
        "split",
        "get",
        "keys",
        "values",
        "items",
        "isdigit",
        "isalpha",
    }
)
# The locale filters (docs/flow-language.md, "Formatting for the shopper"): what each accepts,
# checked when a flow is loaded. Positional arguments: (least, most); keywords: the names allowed.
LOCALE_FILTERS: dict[str, tuple[tuple[int, int], frozenset[str]]] = {
    "money": ((1, 1), frozenset({"cents"})),
    "number": ((0, 1), frozenset({"decimals"})),
    "date": ((0, 1), frozenset({"format"})),
    "plural": ((0, 0), frozenset(formatting.PLURAL_CATEGORIES)),
    "days_since": ((0, 0), frozenset()),
    "days_until": ((0, 0), frozenset()),
    "add_days": ((1, 1), frozenset()),
    "translate": ((1, 1), frozenset()),
}
# What the engine puts in every render besides the flow's variables. `today` is a variable
# authors read; the `@` keys cannot be written in a template, so only the filters see them.
TODAY = "today"
CHAIN = "@chain"  # the locales of the text being rendered, best first
TABLES = "@texts"  # the flow's `texts:` tables: name -> value -> locale -> text
OTHER_VALUES = "*"  # the `texts:` entry for every value a table does not name
ALL_FILTERS = SAFE_FILTERS | frozenset(LOCALE_FILTERS)
# Statements allowed in text: conditionals only. Loops and macros could run unbounded.
SAFE_STATEMENTS = (nodes.Output, nodes.If, nodes.TemplateData)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = {k: v for k, v in self.filters.items() if k in SAFE_FILTERS}
        self.filters.update(join=_join, sum=_sum)
        self.filters.update(
            money=_money,
            number=_number,
            date=_date,
            plural=_plural,
            days_since=_days_since,
            days_until=_days_until,
            add_days=_add_days,
            translate=_translate,
        )
        self.tests = dict(self.tests)
        self.globals = {}  # no range, lipsum, cycler, joiner, namespace, dict

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Flow data is JSON: `order.items` means the key "items", not dict.items().
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if callable(value) and attr not in SAFE_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            result = operator.pow(left, right) if _small_power(left, right) else None
            if result is None:
                raise SecurityError("power is too large")
            return result
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                too_long = (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and (_size(seq) * max(n, 0) > MAX_SEQUENCE)
                )
                if too_long:
                    raise SecurityError(
                        f"repetition is too large (at most {MAX_SEQUENCE:,} characters or items)"
                    )
            return operator.mul(left, right)
        if operator_ == "%" and isinstance(left, str):
            _check_printf(left)
            if _printf_size(left, right) > MAX_RENDERED:
                raise SecurityError(f"format would build more than {MAX_RENDERED:,} characters")
        return super().call_binop(context, operator_, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`'...'.format` and `.format_map`: refused before they run when a width is too wide,
        and stopped as they run once the text passes MAX_RENDERED (a format repeating a field,
        `('{0}' * 1000).format(long)`, multiplies what it is given)."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__
        _check_format(fmt)
        if type(fmt) is not str:
            return wrapped  # Markup and other str types keep Jinja's own formatter
        is_map = value.__name__ == "format_map"
        env = self

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return str(_BoundedFormatter(env).vformat(fmt, (), args[0]))
            return str(_BoundedFormatter(env).vformat(fmt, args, kwargs))

        return bounded


class _BoundedFormatter(SandboxedFormatter):
    """Jinja's sandboxed formatter, counting what it has formatted: past MAX_RENDERED
    characters it stops, before building more."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self.size = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        out = super().format_field(value, format_spec)
        self.size += len(out)
        if self.size > MAX_RENDERED:
            raise SecurityError(f"format would build more than {MAX_RENDERED:,} characters")
        return out


def _printf_size(fmt: str, values: Any) -> int:
    """At most how long `fmt % values` can be: the format, and for each conversion the longest
    value (or the largest width, if longer). Known before it runs."""
    if isinstance(values, Mapping):
        items = list(values.values())
    elif isinstance(values, tuple):
        items = list(values)
    else:
        items = [values]
    longest = max((len(str(v)) if isinstance(v, str) else 32 for v in items), default=0)
    return len(fmt) + fmt.count("%") * max(longest, MAX_WIDTH)


def _size(seq: str | list[Any] | tuple[Any, ...]) -> int:
    """Characters of a string; for a list, its items, nested ones and characters included, each
    item at least 1 (so `[[]] * n` counts n). Counting stops once it passes MAX_SEQUENCE."""
    if isinstance(seq, str):
        return len(seq)
    total = 0
    pending: list[Any] = list(seq)
    while pending and total <= MAX_SEQUENCE:
        item = pending.pop()
        if isinstance(item, list | tuple | dict) and item:
            pending.extend(item.items() if isinstance(item, dict) else item)
        else:
            total += max(len(item), 1) if isinstance(item, str) else 1
    return total


def _check_width(number: str | None) -> None:
    if number == "*":
        raise SecurityError("a format width taken from a value ('%*d') is not allowed")
    digits = (number or "").lstrip("0")  # compared as text first: int() refuses 4,300 digits
    if len(digits) > len(str(MAX_WIDTH)) or (digits and int(digits) > MAX_WIDTH):
        shown = digits if len(digits) <= 12 else digits[:12] + "…"
        raise SecurityError(f"format width or precision {shown} is over the limit of {MAX_WIDTH}")


# After `%` and an optional `(key)`: flags, width, precision (printf-style, as CPython reads it).
_PRINTF_SPEC = re.compile(r"[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?")


def _check_printf(fmt: str) -> None:
    """Refuse `fmt % values` whose widths or precisions are over MAX_WIDTH, before it runs."""
    i = fmt.find("%")
    while i >= 0:
        i += 1
        if fmt.startswith("(", i):  # a mapping key; its parentheses may nest
            depth = 0
            while i < len(fmt):
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
                if depth == 0:
                    break
        spec = _PRINTF_SPEC.match(fmt, i)
        assert spec is not None  # every part of the pattern is optional
        for number in spec.groups():
            _check_width(number)
        i = fmt.find("%", spec.end() + 1)  # past the conversion character (`%%` included)


def _check_format(fmt: str) -> None:
    """Refuse `fmt.format(...)` whose widths or precisions are over MAX_WIDTH, before it runs."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # a malformed format: `.format` raises the same error when it runs
    for _, name, spec, _ in fields:
        if name is None or not spec:
            continue
        if "{" in spec:
            raise SecurityError("a format width taken from a value ('{:{}}') is not allowed")
        for number in re.findall(r"\d+", spec):
            _check_width(number)


@pass_eval_context
def _join(
    eval_ctx: nodes.EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None
) -> str:
    """Jinja's `join`, refusing a separator repeated into more than MAX_SEQUENCE characters."""
    items = list(value)
    if len(str(d)) * max(len(items) - 1, 0) > MAX_SEQUENCE:
        raise SecurityError(f"join would build more than {MAX_SEQUENCE:,} characters of separator")
    joined: str = FILTERS["join"](eval_ctx, items, d, attribute)
    return joined


@pass_environment
def _sum(
    environment: Environment, iterable: Iterable[Any], attribute: Any = None, start: Any = 0
) -> Any:
    """Jinja's `sum`, for numbers only: adding lists or strings one by one takes quadratic time."""
    if not isinstance(start, int | float):
        raise SecurityError("sum adds numbers")
    return FILTERS["sum"](environment, iterable, attribute, start)


def _chain(context: Context) -> tuple[str, ...]:
    chain = context.get(CHAIN)
    return chain if isinstance(chain, tuple) else ()


@pass_context
def _money(context: Context, value: Any, currency: Any = None, cents: Any = True) -> Any:
    return formatting.money(value, currency, _chain(context), cents=cents is not False)


@pass_context
def _number(context: Context, value: Any, decimals: Any = None) -> Any:
    places = decimals if isinstance(decimals, int) and 0 <= decimals <= 6 else None
    return formatting.number(value, places, _chain(context))


@pass_context
def _date(context: Context, value: Any, format: str = "medium") -> Any:
    form = format if format in formatting.DATE_FORMATS else "medium"
    return formatting.format_day(value, form, _chain(context))


@pass_context
def _plural(context: Context, value: Any, **forms: Any) -> Any:
    return formatting.plural(value, forms, _chain(context))


@pass_context
def _days_since(context: Context, value: Any) -> int | None:
    return formatting.days_between(value, context.get(TODAY))


@pass_context
def _days_until(context: Context, value: Any) -> int | None:
    return formatting.days_between(context.get(TODAY), value)


def _add_days(value: Any, days: Any) -> Any:
    return formatting.add_days(value, days)


@pass_context
def _translate(context: Context, value: Any, table: str) -> Any:
    """The flow's text for `value` in `texts: {table: ...}`, in the locale being rendered: its
    own entry, else the table's `"*"` entry (any other value), else the value itself."""
    tables = context.get(TABLES)
    rows = tables.get(table, {}) if isinstance(tables, Mapping) else {}
    entry = rows.get(str(value)) or rows.get(OTHER_VALUES)
    if not entry:
        return value
    for loc in _chain(context):
        if loc in entry:
            return entry[loc]
    return next(iter(entry.values()))


def _small_power(left: Any, right: Any) -> bool:
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        return False
    if abs(right) > 64:
        return abs(left) <= 1
    try:
        return abs(left) ** right <= MAX_POWER
    except OverflowError:
        return False


ENV = _Sandbox(undefined=_SilentUndefined, autoescape=False, keep_trailing_newline=False)

# Bot text is shown with a little markup (`**bold**`, `[label](https://...)`, docs/protocol.md):
# a value put into it must show as itself, so a shopper named `[Refund](https://evil) **VIP**`
# gets no link and no bold. Its markup characters are escaped with a backslash, which the widget
# and the console read as "this character, as text".
_MARKUP = re.compile(r"([\\*\[\]])")


def escape_markup(value: Any) -> Any:
    """`value` as literal text inside bot markup (undefined stays undefined: renders as '')."""
    if isinstance(value, _SilentUndefined) or value is None:
        return value
    return _MARKUP.sub(r"\\\1", str(value))


MARKUP_ENV = ENV.overlay(finalize=escape_markup)


class TemplateProblem(ValueError):
    """A template or condition the author wrote does not parse, or can never work."""

    def __init__(self, message: str, line: int = 1, hint: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.hint = hint


LIMITS_HINT = (
    f"widths and precisions are at most {MAX_WIDTH}, repetitions and `join` separators build at "
    f"most {MAX_SEQUENCE:,} characters (docs/flow-language.md, 'Limits in templates')"
)


def _root_names(ast: nodes.Template) -> set[str]:
    # `today` is set by the engine for every render, never by a flow.
    return set(meta.find_undeclared_variables(ast)) - {TODAY}


def _check_statements(ast: nodes.Template) -> None:
    for node in ast.body:
        _check_node(node)


def _check_node(node: nodes.Node) -> None:
    if isinstance(node, nodes.Stmt) and not isinstance(node, SAFE_STATEMENTS):
        name = type(node).__name__.lower()
        raise TemplateSyntaxError(
            f"'{{% {name} %}}' is not allowed in flow text (only '{{% if %}}')", node.lineno
        )
    for child in node.iter_child_nodes():
        _check_node(child)


# Nodes through which an expression can build a large value.
_BUILDERS = (nodes.BinExpr, nodes.Filter, nodes.Call, nodes.Getattr, nodes.Getitem)
# What a run can raise on bad data; a render shows nothing instead.
_RUN_ERRORS = (
    TemplateError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    RecursionError,
)


def _load_problem(ast: nodes.Template) -> TemplateProblem | None:
    """What `validate` refuses in a template that compiles: a call of a method the sandbox never
    allows, or a bound that trips on constants alone (`{{ '%0300000000d' % 1 }}`)."""
    return _method_problem(ast) or _filter_problem(ast) or _constant_problem(ast)


def _filter_problem(ast: nodes.Template) -> TemplateProblem | None:
    """A locale filter called with arguments it does not take (`money` without a currency,
    `plural(one=...)` without `other`, `date('longest')`) could never format right: say so."""
    for f in ast.find_all(nodes.Filter):
        if f.name not in LOCALE_FILTERS:
            continue
        (least, most), keywords = LOCALE_FILTERS[f.name]
        usage = _FILTER_USAGE[f.name]
        given = len(f.args)
        unknown = [k.key for k in f.kwargs if k.key not in keywords]
        if f.dyn_args is not None or f.dyn_kwargs is not None or unknown:
            what = f"unknown argument '{unknown[0]}'" if unknown else "`*` or `**` arguments"
            return TemplateProblem(f"filter '{f.name}': {what}", f.lineno, hint=usage)
        if not least <= given <= most:
            return TemplateProblem(
                f"filter '{f.name}' takes {_arguments(least, most)}, not {given}",
                f.lineno,
                hint=usage,
            )
        problem = _filter_arguments(f)
        if problem:
            return TemplateProblem(f"filter '{f.name}': {problem}", f.lineno, hint=usage)
    return None


_FILTER_USAGE = {
    "money": "write `{{ order.total | money(order.currency) }}` (or `money('EUR')`; "
    "`money('EUR', cents=false)` writes a whole amount without cents)",
    "number": "write `{{ n | number }}` or `{{ n | number(2) }}` (0 to 6 decimals)",
    "date": "write `{{ d | date }}` or `{{ d | date('long') }}`; formats: "
    + ", ".join(formatting.DATE_FORMATS),
    "plural": "write `{{ n | plural(one='item', other='items') }}`; forms: "
    + ", ".join(formatting.PLURAL_CATEGORIES)
    + " (`other` is required)",
    "days_since": "write `{{ order.placed_at | days_since }}`",
    "days_until": "write `{{ order.eta | days_until }}`",
    "add_days": "write `{{ today | add_days(30) }}`",
    "translate": "write `{{ order.status | translate('status') }}` with a `texts: {status: ...}` "
    "table in the flow",
}


def _arguments(least: int, most: int) -> str:
    if most == 0:
        return "no arguments in parentheses"
    if least == most:
        return f"{least} argument" + ("s" if least > 1 else "")
    return f"{least} to {most} arguments"


def _constant(node: nodes.Expr) -> Any:
    """The value of a literal argument, or `_Dynamic` for one computed at run time."""
    return node.value if isinstance(node, nodes.Const) else _Dynamic


class _Dynamic:
    """Marks an argument computed at run time (checked then, not at load)."""


def _filter_arguments(f: nodes.Filter) -> str | None:
    """What is wrong with the literal arguments of a locale filter, if anything."""
    first = _constant(f.args[0]) if f.args else None
    keywords: dict[str, Any] = {str(k.key): _constant(k.value) for k in f.kwargs}
    if f.name == "date":
        form = keywords.get("format", first)
        if form is not None and form is not _Dynamic and form not in formatting.DATE_FORMATS:
            return f"unknown format {form!r}"
    elif f.name == "number":
        places = keywords.get("decimals", first)
        bad = not isinstance(places, int) or isinstance(places, bool) or not 0 <= places <= 6
        if places is not None and places is not _Dynamic and bad:
            return f"decimals must be a whole number from 0 to 6, not {places!r}"
    elif f.name == "plural":
        if "other" not in keywords:
            return "`other` is required (the form for every count no other form covers)"
    elif f.name == "translate":
        if not isinstance(first, str) or not first:
            return "the table must be written as a name in quotes, e.g. translate('status')"
    elif f.name == "money" and isinstance(first, str) and not re.fullmatch(r"[A-Za-z]{3}", first):
        return f"{first!r} is not a currency code (ISO 4217, e.g. 'EUR')"
    return None


def tables_of(ast: nodes.Node) -> frozenset[str]:
    """The `texts:` tables a template or expression reads with `translate('...')`."""
    return frozenset(
        f.args[0].value
        for f in ast.find_all(nodes.Filter)
        if f.name == "translate" and f.args and isinstance(f.args[0], nodes.Const)
    )


def _method_problem(ast: nodes.Template) -> TemplateProblem | None:
    """A call of a method the sandbox refuses (`name.center(9)`) could never work: say so."""
    allowed = SAFE_METHODS | {"format", "format_map"}
    for call in ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Getattr) and call.node.attr not in allowed:
            return TemplateProblem(
                f"method '.{call.node.attr}()' is not allowed in flow text",
                call.lineno,
                hint="allowed methods: " + ", ".join(sorted(allowed)),
            )
    return None


def _constant_problem(ast: nodes.Template) -> TemplateProblem | None:
    """Run each expression that reads no variable once, under the same bounds as a render."""
    pending: list[nodes.Node] = [ast]
    while pending:
        node = pending.pop()
        constant = (
            isinstance(node, nodes.Expr)
            and (isinstance(node, _BUILDERS) or any(node.find_all(_BUILDERS)))
            and not isinstance(node, nodes.Name)
            and not any(node.find_all(nodes.Name))
        )
        if not constant:
            pending.extend(node.iter_child_nodes())
            continue
        try:
            ENV.from_string(nodes.Template([nodes.Output([node])], lineno=node.lineno)).render()
        except SecurityError as exc:
            return TemplateProblem(str(exc), node.lineno, hint=LIMITS_HINT)
        except _RUN_ERRORS:
            pass  # fails on these constants at every render too, and shows nothing
    return None


def _syntax_message(exc: TemplateSyntaxError) -> str:
    message = exc.message or "invalid template"
    # Jinja reports unknown filters as syntax errors at compile time; say which are allowed.
    if "No filter named" in message:
        message += " (allowed filters: " + ", ".join(sorted(ALL_FILTERS)) + ")"
    return message


class Template:
    """A compiled text template. Plain text without `{{` or `{%` skips Jinja entirely.

    It compiles when it parses and uses only allowed statements and filters; `check()` also
    refuses what can only fail (`{{ 'x' * 10**9 }}`), as `validate` does. Either way a render
    never raises: what trips a bound at run time renders as nothing.
    """

    __slots__ = ("_ast", "_markup", "_problem", "_render", "names", "source", "tables")

    def __init__(self, source: str) -> None:
        self.source = source
        self._markup: Callable[[Mapping[str, Any]], str] | None = None
        self._problem: TemplateProblem | None = None
        if "{{" not in source and "{%" not in source:
            self.names: frozenset[str] = frozenset()
            self.tables: frozenset[str] = frozenset()
            self._render: Callable[[Mapping[str, Any]], str] | None = None
            return
        try:
            self._ast = ENV.parse(source)
            _check_statements(self._ast)
            compiled = ENV.from_string(self._ast)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(_syntax_message(exc), exc.lineno) from None
        self._problem = _load_problem(self._ast)
        self.names = frozenset(_root_names(self._ast))
        self.tables = tables_of(self._ast)
        self._render = compiled.render

    def check(self) -> Template:
        """Itself, or TemplateProblem when `validate` must refuse it (see `_load_problem`)."""
        if self._problem is not None:
            raise TemplateProblem(str(self._problem), self._problem.line, self._problem.hint)
        return self

    def render(self, variables: Mapping[str, Any], *, markup: bool = False) -> str:
        """The text; with `markup`, for bot text: values are escaped for the bot's markup."""
        if self._render is None:
            return self.source
        render = self._render
        if markup:
            if self._markup is None:  # compiled on first use: most templates are never text
                self._markup = MARKUP_ENV.from_string(self._ast).render
            render = self._markup
        try:
            out = render(variables)
        except _RUN_ERRORS:
            # Bad data or a bound tripped at run time must not stop a conversation: this text
            # shows nothing rather than raise.
            return ""
        return out[:MAX_RENDERED]


def _guarded_names(expr: nodes.Expr) -> tuple[set[str], set[str]]:
    """Names that `expr` proves set (`x is defined and ...`), and names used only in such tests."""
    proves: set[str] = set()
    conjuncts = [expr]
    while conjuncts:
        node = conjuncts.pop()
        if isinstance(node, nodes.And):
            conjuncts.extend((node.left, node.right))
        elif (
            isinstance(node, nodes.Test)
            and node.name == "defined"
            and isinstance(node.node, nodes.Name)
        ):
            proves.add(node.node.name)
    uses: dict[str, int] = {}
    for name in expr.find_all(nodes.Name):
        uses[name.name] = uses.get(name.name, 0) + 1
    tests: dict[str, int] = {}
    for t in expr.find_all(nodes.Test):
        if t.name in ("defined", "undefined") and isinstance(t.node, nodes.Name):
            tests[t.node.name] = tests.get(t.node.name, 0) + 1
    only_tested = {n for n, count in tests.items() if uses.get(n, 0) == count}
    return proves, only_tested


class Expression:
    """A compiled condition or value expression (`order.status`, `order.total > 50`).

    `names` are the variables it reads; `proves` are those it shows to be set when it holds
    (`order is defined and ...`), which the unset-variable check uses on the `then` branch.
    """

    __slots__ = ("_eval", "_problem", "names", "proves", "source", "tables")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            ast = ENV.parse("{{ (" + source + ") }}")
            self._eval = ENV.compile_expression(source, undefined_to_none=True)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(_syntax_message(exc), 1) from None
        self._problem = _load_problem(ast)
        output = ast.body[0]
        assert isinstance(output, nodes.Output)
        proves, only_tested = _guarded_names(output.nodes[0])
        # A read guarded by `x is defined and ...` is safe: `and` stops before it.
        self.names = frozenset(_root_names(ast) - only_tested - proves)
        self.proves = frozenset(proves)
        self.tables = tables_of(ast)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        try:
            result = self._eval(**variables)
        except _RUN_ERRORS:
            return None
        # A computed string is text like any other: cut it as rendered text is cut, so values
        # built from values (`set: {a: "{{ a ~ a }}"}`) cannot double without end.
        return result[:MAX_RENDERED] if isinstance(result, str) else result

    def truth(self, variables: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(variables))

    def check(self) -> Expression:
        """Itself, or TemplateProblem when `validate` must refuse it (see `_load_problem`)."""
        if self._problem is not None:
            raise TemplateProblem(str(self._problem), 1, self._problem.hint)
        return self


@lru_cache(maxsize=4096)
def template(source: str) -> Template:
    return Template(source)


@lru_cache(maxsize=4096)
def expression(source: str) -> Expression:
    return Expression(source)


_SINGLE = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}).)*)\}\}$", re.DOTALL)


def value(source: str) -> Template | Expression:
    """A `set:` or `with:` value: `"{{ order }}"` keeps the order as data; other text renders."""
    m = _SINGLE.match(source.strip())
    if m and "{{" not in m["expr"]:
        return expression(m["expr"].strip())
    return template(source)
