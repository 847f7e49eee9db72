"""One on-disk store of per-video frame features (layer 3): keyed, atomic, checksummed.

Whoever computes frame features from a dataset's videos for its own use (the ALWIG trainer's frozen
encoder over a split, the nearest-neighbour baseline's training features) caches them here, so there
is one cache format and one key, not one per model. Features shipped *with* a dataset are a different
thing: ``create-bench extract`` writes them as feature shards next to the data
(:mod:`create_bench.features.parts`), read by :func:`create_bench.data.shards.read_features`.

**Key.** :class:`FeatureKey`: the dataset fingerprint, the split, the frame policy's versioned
signature, the decode size and the encoder's signature (whatever changes its output). Its digest
(with :data:`STORE_VERSION`) names the entry ``<root>/<prefix><digest>.safetensors``.

**Entry.** One safetensors file: the named arrays, the vids (row order of every array) and an
optional JSON ``extra`` (both stored as UTF-8 JSON in uint8 arrays, so a large split never
overflows the safetensors header), and in the header the key and a SHA-256 over all of it. A
*ragged* entry (``offsets`` given) holds a variable number of rows per item instead: item i owns
rows ``offsets[i]:offsets[i + 1]`` of every array (the token vectors of reference texts, stored by
:mod:`create_bench.features.text_metrics`, whose key's ``frames`` names the texts instead).

**Atomic and checked.** An entry is written to a temporary file and renamed into place whole.
:meth:`FeatureStore.get` returns None (the caller recomputes, and :meth:`~FeatureStore.put`
replaces the entry) when the file is missing, unreadable, made for another key, or fails its
checksum, logging why in the last three cases.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import DataError
from create_bench.fsutil import atomic_path

log = logging.getLogger(__name__)

#: Changes when the entry layout or the key's meaning changes (old entries then miss).
STORE_VERSION = 1
_VIDS = "__vids__"
_EXTRA = "__extra__"
_OFFSETS = "__offsets__"


@dataclass(frozen=True)
class FeatureKey:
    """What the stored features depend on."""

    fingerprint: str
    split: str
    #: The frame policy's versioned signature (:func:`create_bench.video.sampling.policy_signature`).
    frames: str
    #: Decode size (H, W); None: the stored size.
    frame_size: tuple[int, int] | None
    #: The encoder's signature: its name, version and every setting that changes its output.
    encoder: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "v": STORE_VERSION,
            "data": self.fingerprint,
            "split": self.split,
            "frames": self.frames,
            "size": list(self.frame_size) if self.frame_size else None,
            "encoder": self.encoder,
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class StoredFeatures:
    """One entry: ``arrays`` (each with one row per vid, in ``vids`` order) and a JSON ``extra``;
    or, with ``offsets`` (int64, ``len(vids) + 1`` values from 0, non-decreasing), ragged arrays
    whose rows ``offsets[i]:offsets[i + 1]`` belong to item i."""

    vids: list[str]
    arrays: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)
    offsets: np.ndarray | None = None

    def _check(self) -> None:
        n = len(self.vids)
        rows = n
        if self.offsets is not None:
            o = np.asarray(self.offsets)
            if o.shape != (n + 1,) or o[0] != 0 or np.any(np.diff(o) < 0):
                raise DataError(f"feature store: offsets must be {n + 1} non-decreasing values from 0")
            rows = int(o[-1])
        for name, a in self.arrays.items():
            if name in (_VIDS, _EXTRA, _OFFSETS) or a.shape[:1] != (rows,):
                what = f"{rows} rows (offsets)" if self.offsets is not None else f"{n} vids"
                raise DataError(f"feature store: array {name!r} of shape {a.shape} does not match {what}")


def _json_bytes(obj: Any) -> np.ndarray:
    raw = json.dumps(obj, ensure_ascii=False, sort_keys=True).encode("utf-8")
    return np.frombuffer(raw, dtype=np.uint8).copy()


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class FeatureStore:
    """A directory of feature entries. ``prefix`` makes a user's files recognisable in a shared root."""

    def __init__(self, root: str | os.PathLike[str], prefix: str = ""):
        self.root = Path(root)
        self.prefix = prefix

    def path(self, key: FeatureKey) -> Path:
        return self.root / f"{self.prefix}{key.digest()}.safetensors"

    def get(self, key: FeatureKey) -> StoredFeatures | None:
        """The entry of ``key``, or None when there is no valid one."""
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
            arrays = load_file(str(path))
        except (OSError, SafetensorError, ValueError) as e:
            log.warning("feature store: ignoring unreadable entry %s: %s", path, e)
            return None
        if meta.get("key") != json.dumps(key.as_dict(), sort_keys=True):
            log.warning("feature store: %s was made for another key (%s); recomputing", path, meta.get("key"))
            return None
        if meta.get("sha256") != _checksum(arrays) or _VIDS not in arrays:
            log.warning("feature store: %s fails its checksum; recomputing", path)
            return None
        vids = json.loads(arrays.pop(_VIDS).tobytes().decode("utf-8"))
        extra = json.loads(arrays.pop(_EXTRA).tobytes().decode("utf-8")) if _EXTRA in arrays else {}
        return StoredFeatures(vids, arrays, extra, arrays.pop(_OFFSETS, None))

    def put(self, key: FeatureKey, features: StoredFeatures) -> Path:
        """Write the entry of ``key`` atomically (replacing any old one); return its path."""
        from safetensors.numpy import save_file

        features._check()
        arrays = {name: np.ascontiguousarray(a) for name, a in features.arrays.items()}
        if features.offsets is not None:
            arrays[_OFFSETS] = np.ascontiguousarray(features.offsets, dtype=np.int64)
        arrays[_VIDS] = _json_bytes([str(v) for v in features.vids])
        if features.extra:
            arrays[_EXTRA] = _json_bytes(features.extra)
        meta = {"key": json.dumps(key.as_dict(), sort_keys=True), "sha256": _checksum(arrays)}
        path = self.path(key)
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
        return path
