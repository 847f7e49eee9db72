"""The model registry (layer 3): what ``create-bench eval --model NAME`` resolves against.

``NAME`` is a registered name (``random``, ``raw-title``, ``nearest-neighbour``, ``alwig``, ``rcg``,
``retrieved-title``) or
``path/to/file.py:Class`` (a user's own model, imported by path). Constructor options come from a
YAML/JSON file and are validated against the constructor's signature before anything is built.

    >>> sorted(MODELS.names())
    ['alwig', 'nearest-neighbour', 'random', 'raw-title', 'rcg', 'retrieved-title']
    >>> load_model("random", {"dim": 16}).meta.name
    'random'
"""

from __future__ import annotations

import difflib
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError, ModelError
from create_bench.models.base import BaseModel, ModelContext, ModelMeta
from create_bench.registry import Registry

MODELS: Registry[Any] = Registry("model")
MODELS.register("random", "create_bench.models.baselines:RandomModel")
MODELS.register("raw-title", "create_bench.models.baselines:RawTitleModel")
MODELS.register("nearest-neighbour", "create_bench.models.baselines:NearestNeighbourModel")
MODELS.register("alwig", "create_bench.models.alwig:ALWIGModel")
MODELS.register("rcg", "create_bench.models.rcg:RCGModel")
MODELS.register("retrieved-title", "create_bench.models.rcg:RetrievedTitleModel")

__all__ = [
    "MODELS",
    "BaseModel",
    "ModelContext",
    "ModelMeta",
    "load_model",
    "load_model_args",
    "model_tasks",
    "validate_model_args",
]

#: Protocol methods per task (kept here, not imported from tasks: models never import tasks).
_TASK_METHODS = {
    "retrieval": ("encode_videos", "encode_texts"),
    "title": ("generate",),
    "caption": ("generate",),
}


def load_model_args(path: str | Path | None) -> dict[str, Any]:
    """Read model options from a ``.yaml``/``.yml`` or ``.json`` file (a mapping of constructor kwargs)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model args file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError: both mean a malformed file
        raise ConfigError(f"cannot parse model args file {p}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(
            f"model args file {p} must hold a mapping of option names to values, got {type(data).__name__}"
        )
    return data


def _simple_types(annotation: Any) -> tuple[type, ...] | None:
    """The plain types an annotation allows (int/float/str/bool/list/dict/tuple, optionally None), or None
    when it is something we do not check."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: list[type] = []
        for arg in typing.get_args(annotation):
            sub = _simple_types(arg)
            if sub is None:
                return None
            out.extend(sub)
        return tuple(out)
    if annotation is type(None) or annotation is None:
        return (type(None),)
    if origin in (list, tuple, dict):
        return (list, tuple) if origin in (list, tuple) else (dict,)
    if annotation in (int, float, str, bool, list, tuple, dict):
        return (list, tuple) if annotation in (list, tuple) else (annotation,)
    return None


def _type_ok(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # bool is an int subclass: accept it only where bool is allowed
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return isinstance(value, allowed)


def validate_model_args(factory: Any, args: dict[str, Any], *, name: str = "model") -> None:
    """Check ``args`` against the constructor of ``factory``: unknown names (with "did you mean"),
    missing required options and plain type mismatches raise :class:`ConfigError`."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    params = {k: p for k, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # unresolvable forward references: skip type checks, keep name checks
        hints = {}
    for key, value in args.items():
        if key not in params:
            if takes_any:
                continue
            hint = difflib.get_close_matches(key, list(params), n=2, cutoff=0.5)
            msg = f"unknown option {key!r} for model {name!r}"
            if hint:
                msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?"
            raise ConfigError(msg + f" (options: {', '.join(params) or 'none'})")
        allowed = _simple_types(hints.get(key, params[key].annotation))
        if allowed is not None and not _type_ok(value, allowed):
            want = " | ".join(t.__name__ for t in allowed)
            raise ConfigError(
                f"option {key!r} of model {name!r} must be {want}, got {type(value).__name__} {value!r}"
            )
    missing = [k for k, p in params.items() if p.default is p.empty and k not in args and k != "self"]
    if missing:
        raise ConfigError(
            f"model {name!r} needs option(s) {', '.join(missing)} (give them with --model-args)"
        )


def _coerce_meta(model: Any, name: str) -> None:
    meta = getattr(model, "meta", None)
    if isinstance(meta, ModelMeta):
        return
    if meta is None:
        meta = ModelMeta(name=type(model).__name__)
    elif isinstance(meta, dict):
        meta = ModelMeta(**meta)
    else:
        raise ModelError(f"model {name!r}: meta must be a ModelMeta or a dict, got {type(meta).__name__}")
    try:
        model.meta = meta
    except AttributeError as exc:
        raise ModelError(f"model {name!r}: cannot set its meta ({exc})") from exc


def model_tasks(model: Any) -> tuple[str, ...]:
    """Tasks a model can run: those whose protocol methods it implements (beyond BaseModel's stubs)."""
    if isinstance(model, BaseModel):
        return model.supported_tasks()
    out = []
    for task, methods in _TASK_METHODS.items():
        if all(callable(getattr(model, m, None)) for m in methods):
            out.append(task)
    return tuple(out)


def load_model(name: str, args: dict[str, Any] | None = None) -> Any:
    """Resolve ``name`` in :data:`MODELS` (or as ``file.py:Class``) and build it with validated ``args``.

    Raises:
        RegistryError: unknown name (with "did you mean").
        ConfigError: bad options (unknown, missing, wrong type) or a constructor that rejects them.
        ModelError: the object is not a model (no protocol method, bad ``meta``).
    """
    args = dict(args or {})
    factory = MODELS.get(name)
    if isinstance(factory, BaseModel):  # a registered instance
        if args:
            raise ConfigError(f"model {name!r} is a ready instance and takes no options")
        model = factory
    else:
        if not callable(factory):
            raise ModelError(f"{name!r} resolves to {type(factory).__name__}, not a model class")
        validate_model_args(factory, args, name=name)
        try:
            model = factory(**args)
        except (ConfigError, ModelError):
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"model {name!r} rejected its options {args}: {exc}") from exc
    _coerce_meta(model, name)
    if not model_tasks(model):
        has = [m for m in ("encode_videos", "encode_texts", "generate") if callable(getattr(model, m, None))]
        raise ModelError(
            f"model {name!r}: class {type(model).__name__} implements none of the model protocol's tasks: "
            "retrieval needs encode_videos(batch) and encode_texts(texts), title/caption generation needs "
            f"generate(batch, kind) (it has {', '.join(has) if has else 'none of them'})"
        )
    return model
