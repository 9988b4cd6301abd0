"""What mypyc relies on in the modules it compiles (setup.py) and mypy alone does not check.

A compiled local keeps the type of its first assignment, and a later value mypy only knows as `Any` is
cast to that type at run time: a loop variable reused for a dict's values raised `TypeError` on a value
Python would have carried on with. mypy accepts such code (`Any` fits everything), so it is found here
from mypy's own types: every assignment or `for` target that gives an earlier-typed local an `Any` value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# what such a value may be given without a check that could fail: ints from the C fast path's tuples (a
# compiled `int` takes any Python int), numpy arrays (not a type mypyc checks), optional Any
ALLOWED = {"int", "Any | None"}


def _compiled_modules() -> list[Path]:
    """The modules setup.py compiled in this checkout: those with a mypyc library beside their source."""
    shims = [so for so in (SRC / "medsentry").rglob("*.so") if not so.name.startswith("_fastpath")]
    return sorted({so.with_name(so.name.split(".", 1)[0] + ".py") for so in shims})


def _any_rebindings(paths: list[Path], root: Path = SRC) -> list[str]:
    from mypy import build
    from mypy.main import process_options
    from mypy.nodes import (
        AssignmentStmt,
        Block,
        ClassDef,
        Decorator,
        ForStmt,
        FuncDef,
        IfStmt,
        ListExpr,
        NameExpr,
        TryStmt,
        TupleExpr,
        Var,
        WhileStmt,
        WithStmt,
    )
    from mypy.types import AnyType, Instance, TupleType, get_proper_type

    # the options setup.py compiles with
    files, options = process_options(["--ignore-missing-imports", "--follow-imports=skip", *map(str, paths)])
    options.preserve_asts, options.export_types, options.incremental = True, True, False
    options.cache_dir = os.devnull  # nothing written
    result = build.build(sources=files, options=options)
    assert not result.errors, result.errors
    found: list[str] = []

    def bind(first: dict[Any, int], path: str, target: Any, value: Any, line: int) -> None:
        if isinstance(target, NameExpr) and isinstance(target.node, Var):
            var = target.node
            if var in first and first[var] != line and var.type is not None and value is not None:
                kind = str(var.type).removeprefix("builtins.")
                unknown = isinstance(get_proper_type(value), AnyType)
                typed = not isinstance(get_proper_type(var.type), AnyType)
                if unknown and typed and kind not in ALLOWED and not kind.startswith("numpy.ndarray"):
                    found.append(f"{path}:{line}: {target.name} ({kind}) given an Any value")
            first.setdefault(var, line)
        elif isinstance(target, TupleExpr | ListExpr):
            whole = get_proper_type(value) if value is not None else None
            for i, item in enumerate(target.items):
                part = None
                if isinstance(whole, TupleType) and i < len(whole.items):
                    part = whole.items[i]
                elif isinstance(whole, AnyType):
                    part = whole
                elif isinstance(whole, Instance) and whole.args and whole.type.fullname in (
                    "builtins.list", "builtins.tuple"
                ):  # fmt: skip
                    part = whole.args[0]
                bind(first, path, item, part, line)

    def walk(statements: list[Any], first: dict[Any, int], path: str) -> None:
        for st in statements:
            if isinstance(st, AssignmentStmt):
                for target in st.lvalues:
                    bind(first, path, target, result.types.get(st.rvalue), st.line)
            elif isinstance(st, ForStmt):
                bind(first, path, st.index, st.inferred_item_type, st.line)
                walk([st.body, st.else_body], first, path)
            elif isinstance(st, WhileStmt):
                walk([st.body, st.else_body], first, path)
            elif isinstance(st, IfStmt):
                walk([*st.body, st.else_body], first, path)
            elif isinstance(st, TryStmt):
                walk([st.body, *st.handlers, st.else_body, st.finally_body], first, path)
            elif isinstance(st, WithStmt):
                walk([st.body], first, path)
            elif isinstance(st, Block):
                walk(st.body, first, path)
            elif isinstance(st, FuncDef):
                walk(st.body.body, {arg.variable: st.line for arg in st.arguments}, path)
            elif isinstance(st, Decorator):
                walk([st.func], first, path)
            elif isinstance(st, ClassDef):
                walk(st.defs.body, {}, path)

    for f in files:
        tree = result.graph[f.module].tree
        assert tree is not None
        walk(tree.defs, {}, str(Path(f.path or "").relative_to(root)))
    return found


def test_no_compiled_local_is_given_a_value_of_unknown_type_after_its_first() -> None:
    paths = _compiled_modules()
    if not paths:
        pytest.skip("the analysis path is not compiled here (MEDSENTRY_PURE_PYTHON, or no mypy)")
    pytest.importorskip("mypy")
    assert _any_rebindings(paths) == []


def test_the_scan_finds_a_reused_loop_variable(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    source = tmp_path / "reuse.py"
    source.write_text(
        "from typing import Any\n\n\n"
        "def f(victims: list[dict[str, Any]], evidence: dict[str, Any]) -> int:\n"
        "    n = 0\n"
        "    for v in victims:\n"
        "        n += len(v)\n"
        "    for k, v in evidence.items():\n"
        "        n += 1\n"
        "    return n\n"
    )
    assert _any_rebindings([source], tmp_path) == ["reuse.py:8: v (dict[str, Any]) given an Any value"]
