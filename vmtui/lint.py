"""Lint a test script before a VM is touched: syntax errors and pyflakes' checks.

The NixOS driver lints every test script with pyflakes (ruff's F rules
today), declaring the driver's globals and the node names as builtins, so
`sever.succeed("true")` fails the build instead of a VM run.  `lint_script`
does the same against the names the script really has (`script_globals`),
so the editor can mark the line while the user types.

Undefined names and syntax errors are errors: a save with errors runs
nothing unless the user asks.  Everything else pyflakes reports (an unused
import, a redefinition) is a warning and never holds a run back.

Nothing here imports Textual: the module is unit tested on its own
(tests/unit/test_lint.py) and timed by benchmarks/bench_lint.py.
"""

from __future__ import annotations

import ast
import enum
import functools
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pyflakes import checker, messages

from driver.config import TestConfig
from driver.driver import BASE_SYMBOLS, expected_symbol_names

# The globals the driver puts into every script's namespace, as the driver
# names them (`Driver.test_symbols`; tests/unit/test_lint.py checks the two agree).
DRIVER_GLOBALS: frozenset[str] = frozenset(BASE_SYMBOLS)

# The pyflakes messages that mean the script cannot run as written.
_ERRORS = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One finding at a 1-based line and 0-based column."""

    line: int
    column: int
    message: str
    severity: Severity

    def __str__(self) -> str:
        return f"{self.line}:{self.column + 1}: {self.message}"


def script_globals(config: TestConfig) -> frozenset[str]:
    """The names a script of `config` finds in its namespace: driver globals, nodes, VLANs."""
    return frozenset(expected_symbol_names(config))


def lint_script(source: str, known_names: Iterable[str], filename: str = "<test script>") -> list[Diagnostic]:
    """The syntax error, or pyflakes' findings, sorted by line; `known_names` are the script's globals."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as error:
        return [Diagnostic(error.lineno or 1, max(0, (error.offset or 1) - 1),
                           f"SyntaxError: {error.msg}", Severity.ERROR)]
    found = checker.Checker(tree, filename=filename, builtins=set(known_names))
    diagnostics = [
        Diagnostic(
            message.lineno,
            getattr(message, "col", 0),
            message.message % message.message_args,
            Severity.ERROR if isinstance(message, _ERRORS) else Severity.WARNING,
        )
        for message in found.messages
    ]
    return sorted(diagnostics, key=lambda d: (d.line, d.column))


def errors_in(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity is Severity.ERROR]


# -- completion ------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """A name to insert at the cursor, with what it is (a signature and the first line of its doc)."""

    insert: str
    detail: str = ""


_ATTRIBUTE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z0-9_]*)$")
_NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)$")


@functools.cache
def machine_methods() -> tuple[Completion, ...]:
    """The script API of a node (`MACHINE_METHODS`), from the driver's own signatures and docstrings."""
    from driver.machine import Machine
    from driver.runner import MACHINE_METHODS

    found = []
    for name in sorted(MACHINE_METHODS):
        member = getattr(Machine, name, None)
        if member is None:
            continue
        try:
            # Annotations are strings (postponed evaluation): show them without quotes.
            signature = str(inspect.signature(member)).replace("(self, ", "(").replace("(self)", "()").replace("'", "")
        except (TypeError, ValueError):
            signature = "(...)"
        found.append(Completion(name, f"{name}{signature}  {first_sentence(inspect.getdoc(member) or '')}".rstrip()))
    return tuple(found)


def first_sentence(doc: str) -> str:
    """The docstring's first sentence (its first paragraph may wrap over several lines)."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    end = paragraph.find(". ")
    return paragraph if end < 0 else paragraph[: end + 1]


def complete(line_before_cursor: str, node_names: Iterable[str], known_names: Iterable[str]) -> tuple[str, list[Completion]]:
    """What the word before the cursor may become: (the part typed, the candidates).

    After `node.` the candidates are the Machine methods; otherwise the node
    names first, then the driver's globals.
    """
    nodes = sorted(set(node_names))
    attribute = _ATTRIBUTE.search(line_before_cursor)
    if attribute is not None:
        owner, typed = attribute.groups()
        if owner in nodes or owner == "machine" or owner == "m":
            return typed, [c for c in machine_methods() if c.insert.startswith(typed)]
        return typed, []
    word = _NAME.search(line_before_cursor)
    typed = word.group(1) if word else ""
    candidates = [Completion(name, "node") for name in nodes if name.startswith(typed)]
    candidates += [Completion(name, "driver global") for name in sorted(set(known_names) - set(nodes))
                   if name.startswith(typed)]
    return typed, candidates
