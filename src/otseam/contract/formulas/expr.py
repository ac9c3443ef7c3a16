"""The expression language of computed points: tokenizer, recursive-descent parser, syntax tree.

The language is deliberately small and not Turing-complete: no loops, no assignment, no user functions,
no access to anything but the point values it names. An expression is parsed here, never handed to
Python's ``eval``/``compile``; the tree is then type-checked (``check.py``) and turned into closures
(``evaluate.py``).

Grammar, loosest binding first::

    expr    := or ( "?" expr ":" expr )?
    or      := and ( ("or" | "||") and )*
    and     := not ( ("and" | "&&") not )*
    not     := ("not" | "!") not | compare
    compare := sum ( ("<" | "<=" | ">" | ">=" | "==" | "!=") sum )?
    sum     := product ( ("+" | "-") product )*
    product := unary ( ("*" | "/" | "%") unary )*
    unary   := "-" unary | atom
    atom    := NUMBER | STRING | "true" | "false" | REF | NAME | NAME "(" args ")" | "(" expr ")"

``REF`` is ``$device/point`` (a point key) or ``$name`` (a computed point's id or an input name);
``NAME`` is an input name or a computed point's id. Comparisons do not chain (``a < b < c`` is an
error, not a surprise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Longer expressions are refused: a formula on a plant is read by people, and this bounds the work.
MAX_LENGTH = 4000
#: Nesting deeper than this is refused before Python's recursion limit could be reached.
MAX_DEPTH = 60


class ExprError(ValueError):
    """A problem in an expression, at character ``pos`` (0-based) of its text."""

    def __init__(self, message: str, pos: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (at character {self.pos + 1})"


# --- syntax tree -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    pos: int


@dataclass(frozen=True, slots=True)
class Num(Node):
    value: float | int


@dataclass(frozen=True, slots=True)
class Str(Node):
    value: str


@dataclass(frozen=True, slots=True)
class BoolLit(Node):
    value: bool


@dataclass(frozen=True, slots=True)
class Ref(Node):
    """A reference as written: ``$plc1/level``, ``$total`` or ``level``. Resolved to a key by the checker."""

    name: str
    dollar: bool


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Cond(Node):
    test: Node
    then: Node
    other: Node


# --- tokens ------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<ref>\$[A-Za-z][A-Za-z0-9_-]*(?:/[A-Za-z][A-Za-z0-9_-]*)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"[^"\\\n]*"|'[^'\\\n]*')
  | (?P<op><=|>=|==|!=|&&|\|\||[-+*/%<>!?:(),])
    """,
    re.VERBOSE | re.ASCII,  # digits and spaces are ASCII ones: "٣" is not a number in a contract
)
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # number, ref, name, string, op, end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed", 0)
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            hint = ""
            if char in "\"'":
                hint = "close the quoted text on the same line, without backslashes"
            elif char == "$":
                hint = "write a point as $device/point, e.g. $plc1/level"
            elif char == "=":
                hint = "compare with '==' (there is no assignment)"
            raise ExprError(f"unexpected character {char!r}", pos, hint)
        kind = match.lastgroup or ""
        if kind != "space":
            value = match.group()
            if kind == "name" and value in _KEYWORDS:
                kind, value = "op", _KEYWORDS[value]
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# --- parser ------------------------------------------------------------------------------------------

_COMPARE = ("<", "<=", ">", ">=", "==", "!=")
_SHOWN = {"&&": "and", "||": "or", "!": "not"}


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        tok = self.tokens[self.index]
        self.index += 1
        return tok

    def accept(self, *ops: str) -> Token | None:
        tok = self.tok
        if tok.kind == "op" and tok.text in ops:
            self.index += 1
            return tok
        return None

    def expect(self, op: str, what: str) -> Token:
        tok = self.accept(op)
        if tok is None:
            raise ExprError(f"expected '{op}' {what}, found {_describe(self.tok)}", self.tok.pos)
        return tok

    def nest(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"the expression nests more than {MAX_DEPTH} levels deep", pos, "split it in steps")

    def expr(self) -> Node:
        self.nest(self.tok.pos)
        node = self.or_()
        mark = self.accept("?")
        if mark is not None:
            then = self.expr()
            self.expect(":", "between the two results of '?'")
            other = self.expr()
            node = Cond(mark.pos, node, then, other)
        self.depth -= 1
        return node

    def or_(self) -> Node:
        node = self.and_()
        while (tok := self.accept("||")) is not None:
            node = Binary(tok.pos, "or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while (tok := self.accept("&&")) is not None:
            node = Binary(tok.pos, "and", node, self.not_())
        return node

    def not_(self) -> Node:
        tok = self.accept("!")
        if tok is not None:
            self.nest(tok.pos)
            node: Node = Unary(tok.pos, "not", self.not_())
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        node = self.sum()
        tok = self.accept(*_COMPARE)
        if tok is not None:
            node = Binary(tok.pos, tok.text, node, self.sum())
            again = self.accept(*_COMPARE)
            if again is not None:
                raise ExprError("comparisons do not chain", again.pos, "write 'a < b and b < c' instead of 'a < b < c'")
        return node

    def sum(self) -> Node:
        node = self.product()
        while (tok := self.accept("+", "-")) is not None:
            node = Binary(tok.pos, tok.text, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while (tok := self.accept("*", "/", "%")) is not None:
            node = Binary(tok.pos, tok.text, node, self.unary())
        return node

    def unary(self) -> Node:
        tok = self.accept("-", "+")
        if tok is not None:
            self.nest(tok.pos)
            operand = self.unary()
            self.depth -= 1
            return Unary(tok.pos, "-", operand) if tok.text == "-" else operand
        return self.atom()

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "number":
            if tok.text.isascii() and tok.text.isdigit():
                return Num(tok.pos, int(tok.text))
            value = float(tok.text)
            if value in (float("inf"), float("-inf")):
                raise ExprError(f"the number {tok.text} is too large", tok.pos)
            return Num(tok.pos, value)
        if tok.kind == "string":
            return Str(tok.pos, tok.text[1:-1])
        if tok.kind == "ref":
            return Ref(tok.pos, tok.text[1:], True)
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return BoolLit(tok.pos, tok.text == "true")
            if self.accept("(") is not None:
                args: list[Node] = []
                if self.accept(")") is None:
                    while True:
                        args.append(self.expr())
                        if self.accept(")") is not None:
                            break
                        self.expect(",", f"between the arguments of {tok.text}()")
                return Call(tok.pos, tok.text, tuple(args))
            return Ref(tok.pos, tok.text, False)
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            self.expect(")", "to close the '(' at character " + str(tok.pos + 1))
            return node
        raise ExprError(f"expected a value, found {_describe(tok)}", tok.pos)


def _describe(tok: Token) -> str:
    if tok.kind == "end":
        return "the end of the expression"
    return f"'{_SHOWN.get(tok.text, tok.text)}'"


def parse(text: str) -> Node:
    """The syntax tree of ``text``; :class:`ExprError` (with the character position) if it is not valid."""
    if not text.strip():
        raise ExprError("the expression is empty", 0)
    parser = _Parser(tokenize(text))
    node = parser.expr()
    if parser.tok.kind != "end":
        raise ExprError(
            f"unexpected {_describe(parser.tok)} after a complete expression",
            parser.tok.pos,
            "an operator may be missing between two values",
        )
    # Long chains such as 1+1+1+... are loops in the parser but a deep tree; the checker and the
    # evaluator walk trees recursively, so the depth is bounded here.
    deep = _too_deep(node)
    if deep is not None:
        raise ExprError(f"the expression nests more than {MAX_TREE_DEPTH} operations deep", deep, "split it in steps")
    return node


#: The deepest tree accepted (each operator, call or condition is one level).
MAX_TREE_DEPTH = 200


def _too_deep(root: Node) -> int | None:
    """The position of a node deeper than :data:`MAX_TREE_DEPTH`, if any (walked without recursion)."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            return node.pos
        stack.extend((child, depth + 1) for child in children(node))
    return None


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return node.args
    if isinstance(node, Cond):
        return (node.test, node.then, node.other)
    return ()


def refs(node: Node) -> list[Ref]:
    """Every reference in the tree, in order of appearance."""
    out: list[Ref] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Ref):
            out.append(item)
        stack.extend(children(item))
    out.sort(key=lambda r: r.pos)
    return out
