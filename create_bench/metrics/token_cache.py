"""Reference tokens computed once per dataset (layer 2): tokenised references cached on disk.

Tokenising a split's references (100,000 texts for CREATE's test split: about 1.5 s of CPU cut
together by :mod:`create_bench.text.jieba_batch`, about 10 s through jieba one by one) is the same
work for every submission. An entry holds one split's references
of one kind as a :class:`~create_bench.metrics.tokens.TokenTable`, under
``<cache root>/reference-tokens/`` (:func:`create_bench.fsutil.cache_root`: ``$CREATE_BENCH_CACHE``
or ``~/.cache/create-bench``).

- **Key**: the dataset fingerprint, split, kind, the tokenizer's signature (jieba's version and
  dictionary hash) and the normaliser's name, plus :data:`CACHE_VERSION`. A changed dictionary or
  normaliser gives another key, so an old entry is never read for it.
- **Never trusted**: an entry starts with the sha256 of its payload, checked on every read, and
  records its key and the sha256 of the very texts it was made from, both compared with the
  caller's. A corrupt, truncated or mismatched entry is reported (warning) and rebuilt.
- **Atomic**: written to a temp file and renamed (:func:`create_bench.fsutil.atomic_write_bytes`);
  a cache that cannot be written only costs the tokenisation again (warning), never the score.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from create_bench.fsutil import atomic_write_bytes, cache_root
from create_bench.metrics.tokens import TokenTable, tokenize_table
from create_bench.text import NORMALIZER_NAME, Tokenizer

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_MAGIC = b"create-bench reference tokens\n"


def cache_key(fingerprint: str, split: str, kind: str, tokenizer: Tokenizer) -> dict[str, str | int]:
    """Everything an entry depends on (besides the texts, which it records a hash of)."""
    return {
        "v": CACHE_VERSION,
        "data": fingerprint,
        "split": split,
        "kind": kind,
        "tok": tokenizer.signature(),
        "norm": NORMALIZER_NAME,
    }


def texts_digest(texts: Sequence[Sequence[str]]) -> str:
    """sha256 of per-video text lists (separators make ``[["ab"]]`` and ``[["a", "b"]]`` differ)."""
    h = hashlib.sha256()
    for refs in texts:
        h.update("\x1f".join(refs).encode("utf-8"))
        h.update(b"\x1e%d\x1d" % len(refs))
    return h.hexdigest()


def entry_path(cache_dir: str | os.PathLike[str], key: dict[str, str | int]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return Path(cache_dir) / "reference-tokens" / f"{key['kind']}-{digest}.tok"


def _encode(table: TokenTable, meta: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        vocab=np.frombuffer("\n".join(table.vocab).encode("utf-8"), dtype=np.uint8),
        ids=table.ids,
        offsets=table.offsets,
        meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8),
    )
    payload = buf.getvalue()
    return _MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload


def _decode(data: bytes, meta: dict) -> TokenTable:
    """The table in an entry; ValueError when anything about it is off."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a reference-token entry")
    head = len(_MAGIC)
    digest, payload = data[head : head + 64].decode("ascii", "replace"), data[head + 65 :]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ValueError("checksum mismatch")
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        if json.loads(z["meta"].tobytes().decode("utf-8")) != meta:
            raise ValueError("made for other texts or settings")
        text = z["vocab"].tobytes().decode("utf-8")
        table = TokenTable(tuple(text.split("\n")) if text else (), z["ids"], z["offsets"])
    if table.offsets[0] != 0 or table.offsets[-1] != len(table.ids) or np.any(np.diff(table.offsets) < 0):
        raise ValueError("inconsistent offsets")
    if len(table.ids) and (table.ids.min() < 0 or table.ids.max() >= len(table.vocab)):
        raise ValueError("token id out of range")
    return table


def reference_tokens(
    texts: Sequence[Sequence[str]],
    tokenizer: Tokenizer,
    *,
    fingerprint: str,
    split: str,
    kind: str,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> tuple[TokenTable, str]:
    """The tokens of every reference (video after video), from the cache when a valid entry exists.

    Args:
        texts: per-video reference lists (the whole split's, before any protocol cut).
        tokenizer: the captioning tokenizer.
        fingerprint, split, kind: which references these are (part of the key).
        cache_dir: cache root (default :func:`create_bench.fsutil.cache_root`).
        use_cache: False tokenises and neither reads nor writes the cache.

    Returns:
        ``(table, status)``: status is ``hit``, ``miss``, ``rebuilt`` (an entry was there but
        corrupt or mismatched) or ``off``.
    """
    flat = (t for refs in texts for t in refs)
    if not use_cache:
        return tokenize_table(flat, tokenizer), "off"
    key = cache_key(fingerprint, split, kind, tokenizer)
    meta = {"key": key, "texts": texts_digest(texts), "count": sum(len(r) for r in texts)}
    path = entry_path(cache_dir if cache_dir is not None else cache_root(), key)
    status = "miss"
    if path.is_file():
        try:
            table = _decode(path.read_bytes(), meta)
            if len(table) == meta["count"]:
                return table, "hit"
            raise ValueError("wrong number of texts")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # np.load on damage
            log.warning("reference-token cache entry %s is unusable (%s); rebuilding it", path, exc)
            status = "rebuilt"
    table = tokenize_table(flat, tokenizer)
    try:
        atomic_write_bytes(path, _encode(table, meta))
    except OSError as exc:
        log.warning("could not write the reference-token cache %s (%s)", path, exc)
    return table, status


__all__ = ["CACHE_VERSION", "cache_key", "entry_path", "reference_tokens", "texts_digest"]
