"""The splitter's packages import only downwards: the rule docs/architecture.md draws, held on every module's imports.

A module's layer is its subpackage (``model_splitter/graph/cuts.py`` is in ``graph``) or, for the modules at the
package's top, its own name. Each layer may import the layers listed for it and itself; anything else in
``model_splitter`` is a violation, whether imported at the top of the module or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "model_splitter"

BASE = {"records"}
STAGES_LOW = {"graph", "store", "planning"}
STAGES = STAGES_LOW | {"intake", "quantize"}
ALLOWED: dict[str, set[str]] = {
    "records": set(),
    "settings": set(),
    "graph": BASE,
    "store": BASE,
    "planning": BASE,
    "intake": BASE | {"graph"},
    "quantize": BASE | {"graph"},
    # Fine-tuning trains a tail on what the quantizer delivers: it sits on quantize.
    "training": BASE | {"graph", "quantize"},
    "services": BASE | STAGES | {"settings", "training"},
    "context": {"settings", "services", "store"},
    # Routes read the store as it is (a manifest, a file, a listing); everything that computes goes through services.
    "api": BASE | {"services", "store", "context", "settings"},
    "web": BASE | {"services", "store", "context", "settings"},
    # The composition root: also sets intake's process-wide torch.load guard.
    "app": {"api", "web", "context", "settings", "store", "intake"},
    "__main__": {"app", "settings"},
}


def layer_of(module: str) -> str:
    """``model_splitter.graph.cuts`` -> ``graph``; ``model_splitter.records`` -> ``records``."""
    return module.split(".")[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "model_splitter":
                found += [(node.lineno, f"model_splitter.{alias.name}") for alias in node.names]
            elif node.module.startswith("model_splitter."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("model_splitter.")]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "<relative import>"))
    return found


def violations(root: Path) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        own = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if own == "__init__":
            continue
        allowed = ALLOWED.get(own)
        if allowed is None:
            problems.append(f"{relative}: layer {own!r} is not in the rule; add it to ALLOWED and the docs")
            continue
        for line, module in imports_of(path):
            if module == "<relative import>":
                problems.append(f"{relative}:{line}: relative import (spell the layer out)")
                continue
            target = layer_of(module)
            if target != own and target not in allowed:
                problems.append(f"{relative}:{line}: {own} imports {module} ({target} is not below {own})")
    return problems


def test_every_layer_imports_only_what_lies_below_it() -> None:
    assert violations(PACKAGE) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """A stage importing a service (the leak this rule was made for) is reported, inside a function too."""
    (tmp_path / "quantize").mkdir()
    (tmp_path / "quantize" / "ranges.py").write_text(
        "from model_splitter.records import ModelRecord\n"
        "def f():\n    from model_splitter.services.splits import default_clip\n"
    )
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "models.py").write_text("from model_splitter import intake\n")
    assert violations(tmp_path) == [
        "api/models.py:1: api imports model_splitter.intake (intake is not below api)",
        "quantize/ranges.py:3: quantize imports model_splitter.services.splits (services is not below quantize)",
    ]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_layer_reaches_one_that_reaches_back(layer: str) -> None:
    """The rule itself has no cycle: following ALLOWED from any layer never comes back to it."""
    seen: set[str] = set()
    frontier = set(ALLOWED[layer])
    while frontier:
        current = frontier.pop()
        assert current != layer, f"{layer} can reach itself through the rule"
        if current not in seen:
            seen.add(current)
            frontier |= ALLOWED.get(current, set())
