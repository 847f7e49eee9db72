"""Name -> object registries with lazy ``"module:Attr"`` entries and "did you mean" (layer 0).

A name may also be ``path/to/file.py:Class``: the file is imported by path, so a user's own
model evaluates without touching the package.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from create_bench.errors import CreateBenchError, RegistryError

T = TypeVar("T")


def load_object(spec: str) -> Any:
    """Import ``"package.module:Attr"`` or ``"path/to/file.py:Attr"`` and return the attribute."""
    if ":" not in spec:
        raise RegistryError(f"expected 'package.module:Attr' or 'path/to/file.py:Attr', got {spec!r}")
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise RegistryError(f"no such file {path} (from {spec!r})")
        mod_name = f"_create_bench_user_{abs(hash(str(path)))}"
        module = sys.modules.get(mod_name)
        if module is None:
            sp = importlib.util.spec_from_file_location(mod_name, path)
            if sp is None or sp.loader is None:
                raise RegistryError(f"cannot import {path}")
            module = importlib.util.module_from_spec(sp)
            sys.modules[mod_name] = module
            try:
                sp.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[mod_name]
                if isinstance(exc, CreateBenchError):  # already says what is wrong (a ModelMeta typo)
                    raise
                # The user's file failed while it ran: name the file (--debug shows the traceback).
                raise RegistryError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc
    else:
        module = _import_module(target, spec)
    try:
        return getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, names, n=3)
        raise RegistryError(
            f"{target} has no attribute {attr!r}" + (f"; did you mean {', '.join(hint)}?" if hint else "")
        ) from None


#: The forms a model/object spec may take, for error messages.
SPEC_FORMS = "a registered name, path/to/file.py:Class, or package.module:Class"


def _import_module(target: str, spec: str) -> Any:
    """Import ``target`` as ``python -m`` would find it: installed, on ``PYTHONPATH``, or (last) in the
    current directory, so ``my_model:MyModel`` works next to ``my_model.py``."""
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if not _is_missing(exc, target):
            raise  # the module exists but one of its own imports is missing: not a spec problem
        cwd = str(Path.cwd())
        if cwd in sys.path or "" in sys.path:
            raise _no_module(target, spec) from None
    sys.path.append(cwd)  # after everything installed: the current directory never shadows a package
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if not _is_missing(exc, target):
            raise
        raise _no_module(target, spec) from None


def _is_missing(exc: ModuleNotFoundError, target: str) -> bool:
    """Whether ``exc`` says ``target`` itself (or a package above it) does not exist."""
    return exc.name is None or target == exc.name or target.startswith(exc.name + ".")


def _no_module(target: str, spec: str) -> RegistryError:
    return RegistryError(
        f"cannot import module {target!r} from {spec!r}: no such module installed, on PYTHONPATH or in "
        f"the current directory (accepted: {SPEC_FORMS})"
    )


class Registry(Generic[T]):
    """A named collection; entries are objects or lazy ``"module:Attr"`` strings."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        if obj is not None:
            self._entries[name] = obj
            return obj

        def deco(o: T) -> T:
            self._entries[name] = o
            return o

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """Resolve ``name`` (a registered name, or a ``module:Attr``/``file.py:Attr`` spec)."""
        if name in self._entries:
            entry = self._entries[name]
            if isinstance(entry, str):
                entry = load_object(entry)
                self._entries[name] = entry
            return entry  # type: ignore[return-value]
        if ":" in name:
            return load_object(name)  # type: ignore[no-any-return]
        hint = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        msg = f"unknown {self.kind} {name!r}"
        if hint:
            msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?"
        msg += f" (known: {', '.join(self.names())}; or give path/to/file.py:Class or package.module:Class)"
        raise RegistryError(msg)


def check_option_names(kind: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise :class:`ConfigError` for the first name in ``given`` that is not in ``known``, with a
    "did you mean" hint (the options objects use it for keyword arguments)."""
    from create_bench.errors import ConfigError

    names = list(known)
    for name in given:
        if name not in names:
            hint = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
            msg = f"unknown {kind} option {name!r}"
            if hint:
                msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?"
            raise ConfigError(msg + f" (known: {', '.join(names)})")
