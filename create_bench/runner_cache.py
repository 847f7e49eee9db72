"""Where a run writes and when it may reuse what it wrote (layer 4): the output paths, the
prediction cache (its key: model, options, model code, data fingerprint, split, tasks, frame
policy, seed) and the ownership check that refuses to overwrite another model class's outputs.

Split out of :mod:`create_bench.runner`, which re-exports :func:`output_paths` and :func:`cache_key`.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from create_bench import __version__
from create_bench.errors import ConfigError
from create_bench.fsutil import sha256_file
from create_bench.models.base import ModelMeta
from create_bench.runner_config import EvalConfig

#: Bump when the cached predictions a run produces would differ for the same inputs.
CACHE_VERSION = 2


def output_paths(cfg: EvalConfig, model_name: str, dataset_name: str) -> tuple[Path, Path]:
    """(results JSON, predictions dir): ``results/<model>/<dataset>-<split>.json`` and the same path
    without ``.json`` (or ``cfg.out`` and its stem)."""
    from create_bench.results import results_path

    out = cfg.out or results_path(cfg.results_dir, model_name, dataset_name, cfg.split)
    return out, out.with_suffix("")


def _cache_file(pred_dir: Path) -> Path:
    return pred_dir.with_name(f".{pred_dir.name}.cache.json")


def _model_source_hash(model: Any) -> str | None:
    """Hash of the code defining the model class, so editing a model's code invalidates its cache:
    the class's file, or, when the class is defined in a package's ``__init__.py`` (a model built
    from several modules, as ALWIG is), every ``.py`` file of that package."""
    try:
        src = inspect.getsourcefile(type(model))
    except TypeError:
        return None
    if not src or not Path(src).is_file():
        return None
    path = Path(src)
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(path.parent).as_posix().encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()[:16]


def _model_class(model: Any) -> str:
    """A stable name of the model class. Classes from ``file.py:Class`` live in a module whose name
    varies between processes, so they are named by their file instead."""
    cls = type(model)
    if cls.__module__.startswith("_create_bench_user_"):
        src = inspect.getsourcefile(cls)
        return f"{Path(src).resolve() if src else cls.__module__}:{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def cache_key(model: Any, model_args: dict[str, Any], fingerprint: str, cfg: EvalConfig, frames: str) -> dict:
    """The inputs that determine the predictions; equal keys mean the cached predictions are reusable."""
    meta: ModelMeta = model.meta
    return {
        "cache_version": CACHE_VERSION,
        "create_bench": __version__,
        "model": meta.to_dict(),
        "model_class": _model_class(model),
        "model_source": _model_source_hash(model),
        "model_args": json.loads(json.dumps(model_args, sort_keys=True, default=str)),
        "data_fingerprint": fingerprint,
        "split": cfg.split,
        "tasks": list(cfg.tasks or ()),
        "frames": frames if meta.inputs == "frames" else None,
        "seed": cfg.seed,
    }


def _key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _owner(results_path: Path, pred_dir: Path) -> str | None:
    """The model class that wrote the outputs at these paths (from the cache record or the results
    JSON), or None when there are none or they do not say."""
    for file, keys in (
        (_cache_file(pred_dir), ("inputs", "model_class")),
        (results_path, ("eval", "model_class")),
    ):
        try:
            value: Any = json.loads(file.read_text(encoding="utf-8"))
            for k in keys:
                value = value[k]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str):
            return value
    return None


def check_results_file(results_path: Path) -> None:
    """Refuse a results path that holds a file create-bench eval did not write (``--overwrite``
    or not: it replaces only results, never another file that happens to sit there)."""
    if not results_path.exists():
        return
    try:
        doc = json.loads(results_path.read_text(encoding="utf-8"))
        ours = isinstance(doc, dict) and "schema_version" in doc and "scores" in doc
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise ConfigError(
            f"refusing to overwrite {results_path}: it is not a create-bench results file; "
            "choose another --out, or move it away yourself"
        )


def _check_owner(model: Any, results_path: Path, pred_dir: Path) -> None:
    """Refuse to overwrite results another model class of the same ``meta.name`` wrote."""
    owner, mine = _owner(results_path, pred_dir), _model_class(model)
    if owner is not None and owner != mine:
        raise ConfigError(
            f"{results_path} holds results of model {model.meta.name!r} made by {owner}, not {mine}: "
            "two models share meta.name; give --overwrite to replace them, or --out/--results-dir "
            "to write elsewhere"
        )


def _refresh_card(pred_dir: Path, card: dict[str, Any]) -> None:
    """Cached predictions keep their arrays; the card is rewritten so it says what eval knows now."""
    import yaml

    from create_bench.fsutil import atomic_write_text
    from create_bench.predictions import MODEL_CARD

    card = json.loads(json.dumps(card, default=str))
    atomic_write_text(pred_dir / MODEL_CARD, yaml.safe_dump(card, allow_unicode=True, sort_keys=False))


def _cache_hit(pred_dir: Path, key: dict) -> bool:
    f = _cache_file(pred_dir)
    if not (pred_dir.is_dir() and f.is_file()):
        return False
    try:
        return json.loads(f.read_text(encoding="utf-8")).get("key") == _key_hash(key)
    except (OSError, ValueError):
        return False
