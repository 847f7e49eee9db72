"""Import directions of ARCHITECTURE.md: a module imports only from its own layer or below;
tasks never import models, models never import tasks/metrics/scoring/runner, and the library never
imports the application layer (``training/``: train loops, streams, ablations), which only
``cli.py``/``commands/`` launch. Every row is enforced for every module: no module is exempt by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "create_bench"

LAYER = {
    "errors": 0, "registry": 0, "signature": 0, "types": 0, "fsutil": 0, "progress": 0, "__init__": 0,
    "text": 1, "video.sampling": 1,
    "data": 2, "video": 2, "metrics": 2, "synthetic": 2,
    # The fixed encoder is torch code: it sits with the generator it is modelled on, one layer up.
    "synthetic.fixed_encoder": 3,
    # The random BERT writer (tests, benchmarks, dry runs of --text-encoder DIR) is torch code too.
    "synthetic.random_bert": 3,
    "tasks": 3, "models": 3, "features": 3,
    "loader": 4, "runner": 4, "predictions": 4, "results": 4, "scoring": 4, "report": 4,
    # Split out of runner.py (issue #17): its configuration, output checks, paths and cache.
    "runner_config": 4, "runner_checks": 4, "runner_cache": 4,
    # Split out of loader.py (issue #17): its options and report, its batch assembly.
    "loader_options": 4, "loader_batching": 4,
    # Split out of scoring.py (issue #17): options, references, per-group statistics, text-metric
    # glue, uncertainty.
    "scoring_options": 4, "scoring_references": 4, "scoring_groups": 4, "scoring_text": 4,
    "scoring_uncertainty": 4,
    # Feature extraction's entry points and the local/torchrun engine decode through the loader.
    "features.extract": 4, "features.engines.local": 4,
    "leaderboard": 5, "cli": 5, "commands": 5, "__main__": 5,
    "training": 6,
}  # fmt: skip
#: The application layer (``training/``): may import anything; only the launchers import it.
APP = 6
#: The only library modules that may import the application layer (they launch it).
LAUNCHERS = ("cli", "commands")


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


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("name,path", MODULES, ids=[m for m, _ in MODULES])
def test_import_directions(name, path):
    mine = layer_of(name)
    for dep in imports_of(path, name):
        if dep in ("create_bench", ""):
            continue
        try:
            theirs = layer_of(dep)
        except KeyError:
            continue  # an attribute import like `create_bench.__version__`
        if theirs == APP:
            assert mine == APP or _under(name, LAUNCHERS), (
                f"the library ({name}) must not import application code {dep}; only cli.py/commands/ launch it"
            )
            continue
        assert theirs <= mine, f"{name} (layer {mine}) imports {dep} (layer {theirs})"
        if _under(name, ("tasks",)):
            assert not _under(dep, ("models",)), f"{name}: tasks never import models"
        if _under(name, ("models",)):
            assert not _under(dep, ("tasks", "metrics", "scoring", "runner")), f"{name} imports {dep}"


def test_training_is_the_app_layer():
    """The training code sits in ``training/`` (layer "app"), none of it left among the models."""
    names = {name for name, _ in MODULES}
    assert {"training", "training.alwig.train", "training.alwig.stream", "training.alwig.ablate"} <= names
    assert all(layer_of(n) == APP for n in names if _under(n, ("training",)))
    assert not [
        n for n in names if _under(n, ("models",)) and n.rsplit(".", 1)[-1] in ("train", "stream", "ablate")
    ]


def test_no_library_module_imports_training():
    """Also imports by string (importlib, registry entries): the library never names ``training``."""
    offenders = []
    for name, path in MODULES:
        if layer_of(name) == APP or _under(name, LAUNCHERS):
            continue
        if any(layer_of(d) == APP for d in imports_of(path, name) if _placed(d)):
            offenders.append(name)
        elif "create_bench.training" in path.read_text("utf-8"):
            offenders.append(name)
    assert not offenders, f"library modules importing application code: {offenders}"


def test_layer_check_sees_a_library_import_of_training(tmp_path):
    """The AST walk records a function-level import of the training package from a model."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from create_bench.training.alwig.train import train\n")
    deps = imports_of(f, "models.alwig.m")
    assert "training.alwig.train" in deps and layer_of("training.alwig.train") == APP


def _placed(dep: str) -> bool:
    try:
        layer_of(dep)
    except KeyError:
        return False
    return True


def test_every_module_is_placed():
    unplaced = []
    for name, _ in MODULES:
        try:
            layer_of(name)
        except KeyError:
            unplaced.append(name)
    assert not unplaced


# --------------------------------------------------------------------------- the video package

VIDEO = [(name, path) for name, path in MODULES if name == "video" or name.startswith("video.")]


def _video_graph() -> dict[str, set[str]]:
    """Module -> the create_bench.video modules it imports (anywhere in the file, also inside
    functions; ``from create_bench.video import worker`` counts as importing both the package and
    the submodule)."""
    names = {name for name, _ in VIDEO}
    graph: dict[str, set[str]] = {}
    for name, path in VIDEO:
        graph[name] = {dep for dep in imports_of(path, name) if dep in names and dep != name}
    return graph


def test_video_backends_never_import_the_decoding_api():
    for name, path in VIDEO:
        if name.startswith("video.backends"):
            deps = imports_of(path, name)
            assert "video.decoding" not in deps, (
                f"{name} imports video.decoding (the module that dispatches to it)"
            )


def test_no_import_cycles_in_the_video_package():
    graph = _video_graph()
    assert "video.decoding" in graph and "video.backends.nvdec" in graph  # the graph sees the package
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_cycle_finder_sees_a_cycle(tmp_path):
    """The AST import graph really records edges, including function-level imports."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from create_bench.video.decoding import decode\n")
    assert "video.decoding" in imports_of(a, "video.backends.a")
