"""The C core's include graph is its layering: no cycles, no huge files.

A unit is a basename under csrc/ (x.c with x.h). Unit x depends on every
unit whose header x.c or x.h includes with ``#include "..."``. The graph
must be acyclic, so that each unit can be read knowing only those below
it, and no .c file may grow past MAX_LINES (issue 11).
"""

from __future__ import annotations

import os
import re

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(__file__)), "csrc")
MAX_LINES = 700
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def include_graph(root: str = CSRC) -> dict[str, set[str]]:
    """unit -> the units it includes, from csrc/*.c and csrc/*.h."""
    graph: dict[str, set[str]] = {}
    for name in sorted(os.listdir(root)):
        base, ext = os.path.splitext(name)
        if ext not in (".c", ".h"):
            continue
        with open(os.path.join(root, name), encoding="utf-8") as f:
            text = f.read()
        deps = graph.setdefault(base, set())
        for inc in INCLUDE.findall(text):
            dep = os.path.splitext(os.path.basename(inc))[0]
            if dep != base:
                deps.add(dep)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of units (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return [*path[path.index(v) :], v]
            if v not in state:
                found = visit(v)
                if found:
                    return found
        path.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state:
            found = visit(u)
            if found:
                return found
    return None


def test_include_graph_has_no_cycle() -> None:
    graph = include_graph()
    assert "core" in graph, "csrc/ not found"
    assert len(graph) > 10, "csrc/ has too few units"
    cycle = find_cycle(graph)
    assert cycle is None, "include cycle between units: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    "name",
    sorted(n for n in os.listdir(CSRC) if n.endswith(".c")),
)
def test_c_file_is_not_too_long(name: str) -> None:
    with open(os.path.join(CSRC, name), encoding="utf-8") as f:
        n = sum(1 for _ in f)
    assert n <= MAX_LINES, f"csrc/{name} has {n} lines (at most {MAX_LINES})"


def test_the_check_sees_a_cycle(tmp_path: os.PathLike[str]) -> None:
    """The checker itself: a cycle through a header and a .c is found."""
    files = {
        "a.h": '#include "core.h"\n',
        "a.c": '#include "a.h"\n#include "b.h"\n',
        "b.h": "",
        "b.c": '#include "b.h"\n#include "a.h"\n',
        "core.h": "",
    }
    for name, text in files.items():
        with open(os.path.join(tmp_path, name), "w") as f:
            f.write(text)
    cycle = find_cycle(include_graph(str(tmp_path)))
    assert cycle is not None
    assert set(cycle) == {"a", "b"}
    os.remove(os.path.join(tmp_path, "b.c"))
    assert find_cycle(include_graph(str(tmp_path))) is None
