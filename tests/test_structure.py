"""The shape of the package, measured from its imports (#18).

Data flows one way: the commands (``tools/``) and the boot (``boot/``) sit on
top; ``actions/`` and ``delivery/`` below them never import back up. No module
imports another's private names, no import circle closes anywhere, the
commands stay small, and only the outbox's protocol asks a record its kind.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cc_bosky"
MAX_COMMAND_LINES = 450
PROTOCOL = "cc_bosky.delivery.deliverable"


def modules() -> Dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = modules()


def imports(name: str) -> Iterator[Tuple[str, str]]:
    """(module imported, name imported from it or '') for each cc_bosky import in ``name``,
    at any depth (a function's lazy import counts)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((a.name, "") for a in node.names if a.name.startswith("cc_bosky"))
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            if not target.startswith("cc_bosky"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub, "") if sub in MODULES else (target, alias.name)


GRAPH: Dict[str, Set[str]] = {
    name: {target for target, _ in imports(name) if target in MODULES} - {name}
    for name in MODULES
}


def cycles() -> List[List[str]]:
    """The graph's strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_anywhere() -> None:
    assert len(GRAPH) > 40  # the walk found the package
    assert cycles() == []


@pytest.mark.parametrize("low", ["cc_bosky.actions", "cc_bosky.delivery"])
def test_actions_and_delivery_never_import_boot_or_the_commands(low: str) -> None:
    upward = sorted(
        (name, target) for name, targets in GRAPH.items() if name.startswith(low + ".")
        or name == low for target in targets
        if target.startswith(("cc_bosky.boot", "cc_bosky.tools")))
    assert upward == []


def test_no_module_imports_another_modules_private_names() -> None:
    private = sorted(
        (name, f"{target}.{imported}") for name in MODULES for target, imported in imports(name)
        if imported.startswith("_") and not imported.startswith("__"))
    assert private == []


def test_the_commands_stay_small() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in MODULES.items() if name.startswith("cc_bosky.tools.")}
    assert sizes and max(sizes.values()) <= MAX_COMMAND_LINES, sizes


def test_only_the_outbox_protocol_asks_a_record_its_kind() -> None:
    """No ``isinstance(x, Event/Action)`` and no ``getattr(x, "kind", ...)`` elsewhere:
    the spool, the outbox and ``bosky status`` go through the protocol."""
    asked = []
    for name, path in MODULES.items():
        if name == PROTOCOL:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id == "isinstance" and len(node.args) == 2:
                kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) \
                    else [node.args[1]]
                if any(isinstance(k, ast.Name) and k.id in ("Event", "Action") for k in kinds):
                    asked.append((name, node.lineno))
            if node.func.id == "getattr" and len(node.args) >= 2 and \
                    isinstance(node.args[1], ast.Constant) and node.args[1].value == "kind":
                asked.append((name, node.lineno))
    assert asked == []


def test_the_stage_and_the_partition_table_load_no_botocore() -> None:
    """cloud-init's stage imports cc_bosky and its launcher; botocore is for the reporter
    and the command, which load it when they send. Reading botocore's partitions.json
    (arns) and classifying nothing (retry) must not import it either."""
    import subprocess
    import sys

    probe = ("import sys, cc_bosky, cc_bosky.boot.launcher, cc_bosky.arns as a, "
             "cc_bosky.delivery.retry\n"
             "assert a.partition('eusc-de-east-1') == 'aws-eusc'\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=PACKAGE.parent, check=True)
    assert done.stdout.strip() == "[]", done.stdout
