"""Import directions of ARCHITECTURE.md: a module imports only from its own layer or below;
tasks never import models, models never import tasks/metrics/runner, and the evaluation library
never imports application code (``models/alwig/train.py``, ``ablate.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "create_bench"

LAYER = {
    "errors": 0, "registry": 0, "signature": 0, "types": 0, "fsutil": 0, "progress": 0, "__init__": 0,
    "text": 1, "video.sampling": 1,
    "data": 2, "video": 2, "metrics": 2,
    "tasks": 3, "models": 3,
    "loader": 4, "runner": 4, "predictions": 4, "results": 4, "scoring": 4, "report": 4, "extract": 4,
    "leaderboard": 5, "cli": 5, "commands": 5, "__main__": 5,
}  # fmt: skip


def layer_of(mod: str) -> int:
    """Layer of a dotted module name below create_bench (longest prefix wins)."""
    parts = mod.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in LAYER:
            return LAYER[key]
    raise KeyError(mod)


def modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        name = name.removesuffix(".__init__") if name != "__init__" else "__init__"
        out.append((name, p))
    return out


def imports_of(path: Path, modname: str) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    found = set()
    pkg = modname.split(".")[:-1] if not path.name == "__init__.py" else modname.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                found.add("create_bench." + ".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
    return {
        m.removeprefix("create_bench.") for m in found if m.startswith("create_bench.") or m == "create_bench"
    }


MODULES = modules()
#: Application code (training, ablation runs): may import anything; the library never imports it.
APPLICATION = ("models.alwig.train", "models.alwig.ablate")


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_import_directions(name, path):
    if name in APPLICATION:
        return
    mine = layer_of(name)
    for dep in imports_of(path, name):
        if dep in ("create_bench", ""):
            continue
        try:
            theirs = layer_of(dep)
        except KeyError:
            continue  # an attribute import like `create_bench.__version__`
        assert theirs <= mine, f"{name} (layer {mine}) imports {dep} (layer {theirs})"
        if name.startswith("tasks"):
            assert not dep.startswith("models"), f"{name}: tasks never import models"
        if name.startswith("models"):
            assert not dep.startswith(("tasks", "metrics", "runner")), f"{name} imports {dep}"
        if not name.startswith("commands"):
            assert dep not in APPLICATION, f"the library ({name}) must not import application code {dep}"


def test_every_module_is_placed():
    unplaced = []
    for name, _ in MODULES:
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced
