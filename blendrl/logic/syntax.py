"""The rule-file language: data types and parsers for declarations, constants and clauses.

Three kinds of lines / statements (``#`` or ``%`` starts a comment that runs to the end of the line):

* a **predicate declaration** ``name:arity:type1,type2`` (``name:0`` for arity 0), one per line;
* a **constant declaration** ``type:object1,object2`` (each object an object slot of the environment),
  one per line;
* a **clause** ``head(X) :- body1(X,Y), not body2(Y).`` or a fact ``head.`` — Prolog-like: variables
  start with an upper-case letter or ``_``, constants (object slots) and predicate names with a
  lower-case letter; ``not`` negates a body literal; a clause ends with ``.`` and may span lines.

Every parsed item remembers its :class:`Source` (file and line) so that later validation errors can
name them. Parsing errors raise :class:`RuleSetError` with ``file:line``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"[a-z][A-Za-z0-9_]*\Z")
"""A predicate name, type name or constant (object slot) name."""

VARIABLE_RE = re.compile(r"[A-Z_][A-Za-z0-9_]*\Z")
"""A variable."""

NEGATION = "not"
"""The keyword that negates a body literal; it cannot be a predicate name."""

_TOKEN_RE = re.compile(r"(?P<space>[ \t\r\f\v]+)|(?P<newline>\n)|(?P<implies>:-)|(?P<punct>[(),.])"
                       r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<bad>.)")
_DECL_RE = re.compile(r"(?P<name>[^:]*):(?P<arity>[^:]*)(?::(?P<types>.*))?\Z")


class RuleSetError(ValueError):
    """A rule set that cannot be built; the message starts with ``file:line:`` where known."""

    def __init__(self, message: str, source: "Source | str | Path | None" = None):
        if isinstance(source, Source):
            self.path, self.line = source.path, source.line
        else:
            self.path, self.line = (str(source) if source is not None else None), None
        self.detail = message
        prefix = ""
        if self.path is not None:
            prefix = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        super().__init__(prefix + message)


@dataclass(frozen=True)
class Source:
    """Where an item was written: a file and a 1-based line number."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Term:
    """An argument of an atom: a variable (``is_variable``) or a constant (an object slot name)."""

    name: str
    is_variable: bool

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Literal:
    """An atom ``predicate(args)``, possibly negated (``not``; body literals only)."""

    predicate: str
    args: tuple[Term, ...]
    negated: bool = False

    @property
    def arity(self) -> int:
        return len(self.args)

    def __str__(self) -> str:
        atom = self.predicate if not self.args else f"{self.predicate}({','.join(map(str, self.args))})"
        return f"{NEGATION} {atom}" if self.negated else atom


@dataclass(frozen=True)
class Clause:
    """``head :- body.`` (an empty body is a fact: its value is its weight)."""

    head: Literal
    body: tuple[Literal, ...]
    source: Source

    def variables(self) -> list[str]:
        """The clause's variables in order of first appearance (head first)."""
        seen: dict[str, None] = {}
        for literal in (self.head, *self.body):
            for term in literal.args:
                if term.is_variable:
                    seen.setdefault(term.name, None)
        return list(seen)

    def __str__(self) -> str:
        if not self.body:
            return f"{self.head}."
        return f"{self.head} :- {', '.join(map(str, self.body))}."


@dataclass(frozen=True)
class PredicateDecl:
    """``name:arity:type1,...``: a predicate and the object type of each argument."""

    name: str
    types: tuple[str, ...]
    source: Source

    @property
    def arity(self) -> int:
        return len(self.types)

    def __str__(self) -> str:
        return f"{self.name}:{self.arity}:{','.join(self.types)}"


@dataclass(frozen=True)
class ConstantDecl:
    """``type:object1,...``: the constants (object slots) of a type."""

    type: str
    objects: tuple[str, ...]
    source: Source


def _content_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text without comment, stripped) for every non-blank line."""
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw).strip()
        if line:
            out.append((number, line))
    return out


def strip_comment(line: str) -> str:
    """The line up to its first ``#`` or ``%``."""
    cut = len(line)
    for mark in ("#", "%"):
        pos = line.find(mark)
        if pos != -1:
            cut = min(cut, pos)
    return line[:cut]


def parse_predicates(text: str, path: str) -> list[PredicateDecl]:
    """Parse a declaration file: one ``name:arity:type1,type2`` per line."""
    decls = []
    for number, line in _content_lines(text):
        source = Source(path, number)
        match = _DECL_RE.match(line)
        if match is None:
            raise RuleSetError(f"expected a declaration 'name:arity:type1,type2', got {line!r}", source)
        name = match["name"].strip()
        if not NAME_RE.match(name):
            raise RuleSetError(f"bad predicate name {name!r} (a lower-case letter, then letters, "
                               "digits or _)", source)
        if name == NEGATION:
            raise RuleSetError(f"{NEGATION!r} is a keyword, not a predicate name", source)
        arity_text = match["arity"].strip()
        if not arity_text.isdigit():
            raise RuleSetError(f"arity of {name!r} must be a non-negative integer, got {arity_text!r}", source)
        arity = int(arity_text)
        types_text = (match["types"] or "").strip()
        types = tuple(t.strip() for t in types_text.split(",")) if types_text else ()
        for object_type in types:
            if not NAME_RE.match(object_type):
                raise RuleSetError(f"bad type name {object_type!r} in the declaration of {name!r}", source)
        if len(types) != arity:
            raise RuleSetError(f"{name!r} is declared with arity {arity} but {len(types)} argument "
                               f"type(s) {list(types)}", source)
        decls.append(PredicateDecl(name, types, source))
    return decls


def parse_constants(text: str, path: str) -> list[ConstantDecl]:
    """Parse a constants file: one ``type:object1,object2`` per line."""
    decls = []
    for number, line in _content_lines(text):
        source = Source(path, number)
        object_type, sep, rest = line.partition(":")
        object_type = object_type.strip()
        if not sep or not NAME_RE.match(object_type):
            raise RuleSetError(f"expected 'type:object1,object2', got {line!r}", source)
        objects = tuple(o.strip() for o in rest.split(","))
        if not rest.strip() or any(not NAME_RE.match(o) for o in objects):
            raise RuleSetError(f"the constants of type {object_type!r} must be a comma-separated list "
                               f"of object names, got {rest.strip()!r}", source)
        if len(set(objects)) != len(objects):
            raise RuleSetError(f"type {object_type!r} lists an object twice", source)
        decls.append(ConstantDecl(object_type, objects, source))
    return decls


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int


def _tokenize(text: str, path: str) -> list[_Token]:
    tokens = []
    line = 1
    for raw_line in text.split("\n"):
        stripped = strip_comment(raw_line)
        for match in _TOKEN_RE.finditer(stripped):
            kind = match.lastgroup
            if kind == "space":
                continue
            if kind == "bad":
                raise RuleSetError(f"unexpected character {match.group()!r}", Source(path, line))
            tokens.append(_Token(kind, match.group(), line))
        line += 1
    return tokens


class _ClauseParser:
    """Recursive descent over the tokens of a clause file."""

    def __init__(self, tokens: list[_Token], path: str):
        self.tokens = tokens
        self.pos = 0
        self.path = path

    def _peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _error(self, message: str, token: _Token | None) -> RuleSetError:
        line = token.line if token is not None else (self.tokens[-1].line if self.tokens else 1)
        found = f"{token.text!r}" if token is not None else "the end of the file"
        return RuleSetError(f"{message}, found {found}", Source(self.path, line))

    def _expect(self, text: str, what: str) -> _Token:
        token = self._peek()
        if token is None or token.text != text:
            raise self._error(f"expected {what}", token)
        self.pos += 1
        return token

    def clauses(self) -> list[Clause]:
        out = []
        while self._peek() is not None:
            out.append(self._clause())
        return out

    def _clause(self) -> Clause:
        start = self._peek()
        assert start is not None
        head = self._literal(allow_negation=False)
        body: list[Literal] = []
        token = self._peek()
        if token is not None and token.kind == "implies":
            self.pos += 1
            body.append(self._literal(allow_negation=True))
            while (token := self._peek()) is not None and token.text == ",":
                self.pos += 1
                body.append(self._literal(allow_negation=True))
        self._expect(".", "',' or '.' (every clause ends with a full stop)" if body
                     else "':-' or '.' after the head")
        return Clause(head, tuple(body), Source(self.path, start.line))

    def _literal(self, allow_negation: bool) -> Literal:
        token = self._peek()
        negated = False
        if token is not None and token.text == NEGATION:
            if not allow_negation:
                raise RuleSetError("a clause head cannot be negated", Source(self.path, token.line))
            negated = True
            self.pos += 1
            token = self._peek()
        if token is None or token.kind != "word" or not NAME_RE.match(token.text):
            raise self._error("expected a predicate name (starting with a lower-case letter)", token)
        if token.text == NEGATION:
            raise self._error(f"expected a predicate name after {NEGATION!r}", token)
        self.pos += 1
        args: list[Term] = []
        nxt = self._peek()
        if nxt is not None and nxt.text == "(":
            self.pos += 1
            if (close := self._peek()) is not None and close.text == ")":
                self.pos += 1
            else:
                args.append(self._term())
                while (sep := self._peek()) is not None and sep.text == ",":
                    self.pos += 1
                    args.append(self._term())
                self._expect(")", "',' or ')' in the argument list")
        return Literal(token.text, tuple(args), negated)

    def _term(self) -> Term:
        token = self._peek()
        if token is None or token.kind != "word":
            raise self._error("expected an argument (a Variable or a constant)", token)
        self.pos += 1
        if VARIABLE_RE.match(token.text):
            return Term(token.text, True)
        if token.text == NEGATION:
            raise self._error("expected an argument", token)
        return Term(token.text, False)


def parse_clauses(text: str, path: str) -> list[Clause]:
    """Parse a clause file (any number of clauses, each ending with ``.``)."""
    return _ClauseParser(_tokenize(text, path), path).clauses()
