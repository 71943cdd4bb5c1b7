"""No test reads the clock when it is collected.

A time computed at import (a module constant, a parametrize argument, a default argument)
is stale by the time its test runs: `test_an_altered_request_is_refused[future]` built
"now + 20 minutes" at collection, and failed whenever the suite took longer than the
5 minutes it had to spare. Clocks are read inside the test (or its fixtures) instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Attribute calls that read a clock: datetime.now(), date.today(), time.time(), ...
CLOCK_CALLS = {
    "now",
    "utcnow",
    "today",
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
}


def _evaluated_at_import(node: ast.AST) -> Iterator[ast.AST]:
    """Every node of `node` that Python evaluates when the module is imported: all but
    the bodies of functions and lambdas (their decorators and defaults are evaluated)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        for part in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if part is not None:
                yield from _evaluated_at_import(part)
        return
    if isinstance(node, ast.Lambda):
        for part in [*node.args.defaults, *node.args.kw_defaults]:
            if part is not None:
                yield from _evaluated_at_import(part)
        return
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _evaluated_at_import(child)


def clock_reads_at_import(source: str) -> list[int]:
    """Line numbers of clock reads that run when `source` is imported."""
    return sorted(
        node.lineno
        for node in _evaluated_at_import(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    )


def test_the_finder_sees_a_clock_read_at_import_and_not_one_at_run_time() -> None:
    source = (
        "import pytest\n"
        "from datetime import datetime\n"
        "STARTED = datetime.now()\n"
        "@pytest.mark.parametrize('at', [datetime.now()])\n"
        "def test_a(at=time.time()):\n"
        "    datetime.now()\n"
        "later = lambda: datetime.now()\n"
        "class TestB:\n"
        "    stamp = date.today()\n"
    )
    assert clock_reads_at_import(source) == [3, 4, 5, 9]


def test_no_test_module_reads_the_clock_at_collection() -> None:
    found = {
        str(path.relative_to(TESTS)): lines
        for path in sorted(TESTS.rglob("*.py"))
        if (lines := clock_reads_at_import(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"clock read at import (file: lines): {found}"
