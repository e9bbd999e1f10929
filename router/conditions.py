"""The ``if`` of automation rules: a small expression language parsed into a tree, never eval'd.

    score < 4 and appeal.channel in ['telegram', 'vk']
    not (customer.vip or appeal.tags contains 'Важно')

Names are dotted paths into the event's data; a missing name is ``null``. Ordering a value of
another type (or ``null``) is simply false, never an error at run time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)
KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "true", "false", "null"})
COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not in", "contains"})
MAX_LENGTH = 2000
MAX_DEPTH = 40


class ConditionError(ValueError):
    """A condition that cannot be parsed, with where it went wrong."""


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: number, string, true/false/null, or a list of them."""

    value: Any


@dataclass(frozen=True, slots=True)
class Name:
    """A dotted path into the event's data."""

    path: str


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Logic:
    """``and`` / ``or`` over two or more parts, or ``not`` over one."""

    op: str
    parts: tuple[Node, ...]


Node = Union[Literal, Name, Compare, Logic]  # noqa: UP007 (a runtime alias for the tree)


def parse(text: str) -> Node:
    """The tree of a condition; ``ConditionError`` says what is wrong and where."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"a condition is at most {MAX_LENGTH} characters")
    return _Parser(text).parse()


def names(node: Node) -> set[str]:
    """Every name a condition reads (for checking them against an event's fields)."""
    if isinstance(node, Name):
        return {node.path}
    if isinstance(node, Compare):
        return names(node.left) | names(node.right)
    if isinstance(node, Logic):
        return set().union(*(names(p) for p in node.parts))
    return set()


def holds(node: Node, data: Mapping[str, Any]) -> bool:
    """Whether the condition is true for ``data``."""
    return bool(_value(node, data))


def _value(node: Node, data: Mapping[str, Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Name):
        return _lookup(data, node.path)
    if isinstance(node, Logic):
        if node.op == "not":
            return not _value(node.parts[0], data)
        if node.op == "and":
            return all(_value(p, data) for p in node.parts)
        return any(_value(p, data) for p in node.parts)
    return _compare(node.op, _value(node.left, data), _value(node.right, data))


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        else:
            value = getattr(value, part, None) if not isinstance(value, str | bytes) else None
        if value is None:
            return None
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op in ("in", "not in"):
        try:
            found = right is not None and left in right
        except TypeError:
            found = False
        return found if op == "in" else not found
    if op == "contains":
        try:
            return left is not None and right in left
        except TypeError:
            return False
    if left is None or right is None or isinstance(left, bool) != isinstance(right, bool):
        return False
    try:
        if op == "<":
            return bool(left < right)
        if op == "<=":
            return bool(left <= right)
        if op == ">":
            return bool(left > right)
        return bool(left >= right)
    except TypeError:
        return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokens(text)
        self.at = 0
        self.depth = 0

    def _tokens(self, text: str) -> list[tuple[str, str, int]]:
        out: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                column = len(text) - len(text[position:].lstrip()) + 1
                raise ConditionError(f"unexpected character at column {column}: {text!r}")
            kind = match.lastgroup or ""
            value = match.group(kind)
            out.append((kind, value, match.start(kind) + 1))
            position = match.end()
        return out

    def parse(self) -> Node:
        if not self.tokens:
            raise ConditionError("the condition is empty")
        node = self._or()
        if self.at < len(self.tokens):
            _, value, column = self.tokens[self.at]
            raise ConditionError(f"unexpected {value!r} at column {column}")
        return node

    def _peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def _take(self, expected: str | None = None) -> tuple[str, str, int]:
        if self.at >= len(self.tokens):
            raise ConditionError(f"the condition ends too early: {self.text!r}")
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise ConditionError(f"expected {expected!r} at column {token[2]}, got {token[1]!r}")
        self.at += 1
        return token

    def _or(self) -> Node:
        parts = [self._and()]
        while self._peek() == "or":
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Logic("or", tuple(parts))

    def _and(self) -> Node:
        parts = [self._not()]
        while self._peek() == "and":
            self._take()
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else Logic("and", tuple(parts))

    def _not(self) -> Node:
        if self._peek() == "not":
            self._take()
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConditionError("the condition nests too deeply")
            return Logic("not", (self._not(),))
        return self._comparison()

    def _comparison(self) -> Node:
        left = self._operand()
        op = self._peek()
        if op == "not" and self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][1] == "in":
            self._take()
            op = "not in"
        if op in COMPARISONS:
            self._take()
            return Compare(op, left, self._operand())
        return left

    def _operand(self) -> Node:
        kind, value, column = self._take()
        if value == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConditionError("the condition nests too deeply")
            node = self._or()
            self._take(")")
            self.depth -= 1
            return node
        if value == "[":
            items: list[Any] = []
            while self._peek() != "]":
                item = self._operand()
                if not isinstance(item, Literal):
                    raise ConditionError(f"a list holds constants only (column {column})")
                items.append(item.value)
                if self._peek() == ",":
                    self._take()
            self._take("]")
            return Literal(items)
        if kind == "number":
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            return Literal(re.sub(r"\\(.)", r"\1", value[1:-1]))
        if kind == "word":
            if value in ("true", "false"):
                return Literal(value == "true")
            if value == "null":
                return Literal(None)
            if value in KEYWORDS:
                raise ConditionError(f"unexpected {value!r} at column {column}")
            return Name(value)
        raise ConditionError(f"unexpected {value!r} at column {column}")
