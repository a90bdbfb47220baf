"""Templates (`{{ order.status }}`) and conditions (`order.total > 50`), run in a sandbox.

Jinja2's ImmutableSandboxedEnvironment: no attribute access to Python internals, no mutation of
values, no `eval`. We add what the sandbox lacks against hostile input: `*` and `**` are
intercepted so `'x' * 10**9` cannot allocate gigabytes, ranges are small, and rendered text is cut
at a fixed length. Shopper text is only ever *data* passed to a template, never compiled as one.

Templates are compiled once, when a flow is loaded; the engine only renders them.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RENDERED = 4000
MAX_SEQUENCE = 10_000
MAX_POWER = 10**12


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
# Statements allowed in text: conditionals only. Loops and macros could run unbounded.
SAFE_STATEMENTS = (nodes.Output, nodes.If, nodes.TemplateData)


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = {k: v for k, v in self.filters.items() if k in SAFE_FILTERS}
        self.tests = dict(self.tests)
        self.globals = {}

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
                    and (len(seq) * max(n, 0) > MAX_SEQUENCE)
                )
                if too_long:
                    raise SecurityError("repetition is too large")
            return operator.mul(left, right)
        return super().call_binop(context, operator_, left, right)


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
    """A template or condition the author wrote does not parse."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def _root_names(ast: nodes.Template) -> set[str]:
    return set(meta.find_undeclared_variables(ast))


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


def _syntax_message(exc: TemplateSyntaxError) -> str:
    message = exc.message or "invalid template"
    # Jinja reports unknown filters as syntax errors at compile time; say which are allowed.
    if "No filter named" in message:
        message += " (allowed filters: " + ", ".join(sorted(SAFE_FILTERS)) + ")"
    return message


class Template:
    """A compiled text template. Plain text without `{{` or `{%` skips Jinja entirely."""

    __slots__ = ("_ast", "_markup", "_render", "names", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._markup: Callable[[Mapping[str, Any]], str] | None = None
        if "{{" not in source and "{%" not in source:
            self.names: frozenset[str] = frozenset()
            self._render: Callable[[Mapping[str, Any]], str] | None = None
            return
        try:
            self._ast = ENV.parse(source)
            _check_statements(self._ast)
            compiled = ENV.from_string(self._ast)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(_syntax_message(exc), exc.lineno) from None
        self.names = frozenset(_root_names(self._ast))
        self._render = compiled.render

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
        except (TemplateError, ArithmeticError, TypeError, ValueError, OverflowError):
            # Bad data at run time must not stop a conversation: show the template's
            # plain parts rather than raise.
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

    __slots__ = ("_eval", "names", "proves", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        try:
            ast = ENV.parse("{{ (" + source + ") }}")
            self._eval = ENV.compile_expression(source, undefined_to_none=True)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(_syntax_message(exc), 1) from None
        output = ast.body[0]
        assert isinstance(output, nodes.Output)
        proves, only_tested = _guarded_names(output.nodes[0])
        # A read guarded by `x is defined and ...` is safe: `and` stops before it.
        self.names = frozenset(_root_names(ast) - only_tested - proves)
        self.proves = frozenset(proves)

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        try:
            return self._eval(**variables)
        except (
            TemplateError,
            ArithmeticError,
            TypeError,
            ValueError,
            OverflowError,
            RecursionError,
        ):
            return None

    def truth(self, variables: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(variables))


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
