"""Attribute filters (issue 28): `brand IN ("Mori", "Kumo") AND price < 10000 AND in_stock = true`.

Grammar (keywords in any case): `expr := and (OR and)*`, `and := atom (AND atom)*`,
`atom := ( expr ) | key op value | key IN ( value, ... )`, `op := = != < <= > >=`; a value is a string in
double quotes (`\\"` and `\\\\` escaped), a number, or `true`/`false`. A key is `category` or any `attrs`
key. A comparison on an item without the key is false (`!=` too), ranges take numbers only. Every mistake is
an `InvalidInput` naming it, raised before anything is searched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imgcore.errors import InvalidInput

Value = str | float | bool
MAX_FILTER_CHARS = 4096
MAX_TERMS = 256
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)'
    r"|(?P<op><=|>=|!=|=|<|>|\(|\)|,)|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*))"
)
_RANGE_OPS = {"<", "<=", ">", ">="}


def bad_filter(message: str) -> InvalidInput:
    return InvalidInput(f"filter: {message}", reason="bad_filter")


@dataclass(frozen=True)
class Cmp:
    key: str
    op: str  # = != < <= > >=
    value: Value


@dataclass(frozen=True)
class In:
    key: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND | OR
    parts: tuple[Node, ...]


Node = Cmp | In | BoolOp


@dataclass(frozen=True)
class Filter:
    """A parsed filter: its tree, the keys it names, and the text it came from."""

    root: Node
    keys: frozenset[str]
    text: str

    def matches(self, fields: dict[str, Any]) -> bool:
        """Whether one item (its attrs plus `category`) passes: used for fresh items and post-filtering."""
        return _eval_row(self.root, fields)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise bad_filter(f"unexpected character {text[pos:].lstrip()[:1]!r} at {pos}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.keys: set[str] = set()
        self.terms = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise bad_filter(f"ends early{f', expected {expected!r}' if expected else ''}")
        if expected is not None and tok[1].upper() != expected:
            raise bad_filter(f"expected {expected!r}, found {tok[1]!r}")
        self.pos += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].upper() == word

    def expr(self, depth: int = 0) -> Node:
        if depth > 32:
            raise bad_filter("too deeply nested")
        return self.chain("OR", lambda: self.chain("AND", lambda: self.atom(depth)))

    def chain(self, word: str, part: Callable[[], Node]) -> Node:
        """`part (word part)*`: one node, or the parts joined by AND or OR."""
        parts = [part()]
        while self.is_word(word):
            self.take()
            parts.append(part())
        return parts[0] if len(parts) == 1 else BoolOp(word, tuple(parts))

    def atom(self, depth: int) -> Node:
        kind, text = self.take()
        if text == "(":
            node = self.expr(depth + 1)
            self.take(")")
            return node
        if kind != "word" or text.upper() in {"AND", "OR", "IN", "TRUE", "FALSE"}:
            raise bad_filter(f"expected an attribute name, found {text!r}")
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise bad_filter(f"more than {MAX_TERMS} comparisons")
        self.keys.add(text)
        if self.is_word("IN"):
            self.take()
            return In(text, self.value_list())
        op_kind, op = self.take()
        if op_kind != "op" or op in {"(", ")", ","}:
            raise bad_filter(f"expected a comparison after {text!r}, found {op!r}")
        value = self.value()
        if op in _RANGE_OPS and (isinstance(value, bool) or not isinstance(value, float)):
            raise bad_filter(f"{text} {op} needs a number, not {value!r}")
        return Cmp(text, op, value)

    def value_list(self) -> tuple[Value, ...]:
        self.take("(")
        values = [self.value()]
        while self.peek() is not None and self.peek() == ("op", ","):
            self.take()
            values.append(self.value())
        self.take(")")
        return tuple(values)

    def value(self) -> Value:
        kind, text = self.take()
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text)
        if kind == "word" and text.lower() in {"true", "false"}:
            return text.lower() == "true"
        raise bad_filter(f'expected a value ("text", a number, true or false), found {text!r}')


def parse_filter(text: str | None) -> Filter | None:
    """The parsed filter, None for no filter (None or blank); InvalidInput (400) naming the mistake."""
    if text is None or not text.strip():
        return None
    if len(text) > MAX_FILTER_CHARS:
        raise bad_filter(f"longer than {MAX_FILTER_CHARS} characters")
    parser = _Parser(text)
    root = parser.expr()
    if parser.peek() is not None:
        raise bad_filter(f"unexpected {parser.peek()[1]!r} after a complete expression")  # type: ignore[index]
    return Filter(root, frozenset(parser.keys), text)


def same_value(have: Any, want: Value) -> bool:
    """Equality as the filter means it: booleans only equal booleans, numbers compare as numbers."""
    if isinstance(want, bool) or isinstance(have, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    if isinstance(want, float):
        return isinstance(have, int | float) and float(have) == want
    return isinstance(have, str) and have == want


def _eval_row(node: Node, fields: dict[str, Any]) -> bool:
    if isinstance(node, BoolOp):
        parts = (_eval_row(p, fields) for p in node.parts)
        return all(parts) if node.op == "AND" else any(parts)
    if node.key not in fields:
        return False
    have = fields[node.key]
    if isinstance(node, In):
        return any(same_value(have, v) for v in node.values)
    if node.op == "=":
        return same_value(have, node.value)
    if node.op == "!=":
        return not same_value(have, node.value)
    if isinstance(have, bool) or not isinstance(have, int | float):
        return False
    x, v = float(have), float(node.value)
    return {"<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v}[node.op]
