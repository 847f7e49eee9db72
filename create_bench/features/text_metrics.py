"""BERTScore-F and ACTEr-r for generated titles and captions (layer 3): encoder + maths.

:func:`embedding_statistics` normalises the texts (the captioning metrics' NFKC normaliser; omega
values index the characters of the normalised title), encodes every reference once per split (kept
in this process for the next system scored on the same references and, given a
:class:`ReferenceCache`, on disk in the feature store for the next process) and every distinct
candidate once, and returns per-video :class:`~create_bench.metrics.bertscore.EmbeddingStats`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import ConfigError, DataError
from create_bench.features.store import FeatureKey, FeatureStore, StoredFeatures
from create_bench.features.text_encoder import Encoded, TextEncoder, get_encoder
from create_bench.metrics.bertscore import (
    ACTER_RULES,
    ACTER_VERSION,
    BERTSCORE_VERSION,
    BUILTIN_BASELINES,
    DEFAULT_EPS,
    DEFAULT_RULE,
    EmbeddingStats,
    acter_weights,
    harmonic,
    idf_table,
    match,
    read_baseline,
    token_omega,
    token_weights,
)
from create_bench.text import NORMALIZER_NAME
from create_bench.text.normalize import normalize

log = logging.getLogger(__name__)

#: Results/report line when no encoder is configured.
ABSENT = (
    "BERTScore and ACTEr-r not computed: no text encoder configured "
    "(--text-encoder NAME|DIR: a BERT-family model, e.g. bert-base-chinese, local or in the HF cache)"
)
OMEGA_COLUMN = "title_omega"


@dataclass(frozen=True)
class TextMetricOptions:
    """How BERTScore and ACTEr-r are computed (every field is in their signatures).

    Attributes:
        encoder: local model directory or cached hub name.
        layer: hidden layer (None: 8, or the model's last if shallower).
        idf: IDF weights over the split's reference sentences.
        baseline: ``auto`` (built-in baseline for bert-base-chinese at layer 8, else none), ``none``,
            or a ``bert_score`` baseline file (``LAYER,P,R,F``).
        eps, rule: ACTEr-r's weights ``eps + omega`` (see :mod:`create_bench.metrics.bertscore`).
        device: ``cpu`` or ``cuda[:N]``. batch_size: sentences per forward pass.
    """

    encoder: str
    layer: int | None = None
    idf: bool = False
    baseline: str = "auto"
    eps: float = DEFAULT_EPS
    rule: str = DEFAULT_RULE
    device: str = "cpu"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.rule not in ACTER_RULES:
            raise ConfigError(f"ACTEr-r rule must be one of {', '.join(ACTER_RULES)}, got {self.rule!r}")
        if not 0 <= float(self.eps) <= 1:
            raise ConfigError(f"ACTEr-r eps must be in [0, 1], got {self.eps!r}")
        if self.rule == "eps+omega" and float(self.eps) == 0:
            pass  # allowed: a title whose characters are all omega 0 then has recall 0


def _baseline(opts: TextMetricOptions, enc: TextEncoder) -> tuple[tuple[float, float, float] | None, str]:
    if opts.baseline == "none":
        return None, "none"
    if opts.baseline == "auto":
        b = BUILTIN_BASELINES.get((opts.encoder, enc.layer))
        return (b, "bert_score-0.3.13-zh") if b else (None, "none")
    b = read_baseline(opts.baseline, enc.layer)
    return b, f"file-{','.join(f'{x:.6g}' for x in b)}"


_REF_CACHE: dict[tuple[str, str], tuple[Encoded, list[list[int]]]] = {}
REF_CACHE_ENTRIES = 2
#: The arrays of a stored reference encoding (one row per token; :class:`Encoded`'s fields).
_STORED = ("vectors", "ids", "special", "spans")


@dataclass(frozen=True)
class ReferenceCache:
    """Where a split's reference embeddings are kept on disk: the ONE feature store
    (:mod:`create_bench.features.store`: atomic, checksummed, rebuilt when corrupt), under
    ``<root>/reference-embeddings/``. The key: data fingerprint, split, kind, normaliser and the
    digest of the very texts (in the key's ``frames`` field), the encoder's signature and the
    device type (CPU and CUDA vectors differ in the last bits, so neither stands for the other)."""

    root: Path
    fingerprint: str
    split: str
    kind: str

    def store(self) -> FeatureStore:
        return FeatureStore(Path(self.root) / "reference-embeddings", prefix=f"{self.kind}-")

    def key(self, enc: TextEncoder, digest: str) -> FeatureKey:
        texts = f"text:{self.kind}|{NORMALIZER_NAME}|texts:{digest}"
        return FeatureKey(self.fingerprint, self.split, texts, None, f"{enc.signature()},{enc.device.type}")


def _load_stored(cache: ReferenceCache, enc: TextEncoder, digest: str, n: int) -> Encoded | None:
    got = cache.store().get(cache.key(enc, digest))
    if got is None or got.offsets is None or len(got.vids) != n or set(got.arrays) != set(_STORED):
        return None
    a = got.arrays
    return Encoded(a["vectors"], got.offsets, a["ids"], a["special"].astype(bool), a["spans"])


def _store(cache: ReferenceCache, enc: TextEncoder, digest: str, encoded: Encoded) -> None:
    arrays = {
        "vectors": encoded.vectors,
        "ids": encoded.ids,
        "special": encoded.special.astype(np.uint8),
        "spans": encoded.spans,
    }
    entry = StoredFeatures([str(i) for i in range(len(encoded))], arrays, offsets=encoded.offsets)
    try:
        cache.store().put(cache.key(enc, digest), entry)
    except OSError as exc:  # a cache that cannot be written costs only the encoding next time
        log.warning("reference embeddings not cached (%s): %s", cache.root, exc)


@contextlib.contextmanager
def _entry_lock(entry: Path) -> Iterator[None]:
    """An exclusive lock (``flock``) on ``<entry>.lock`` while an entry is looked up or made; without
    a writable cache directory, no lock (the entry then cannot be written either)."""
    import fcntl

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fh = open(entry.with_name(entry.name + ".lock"), "a+b")
    except OSError:
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _stored_or_encoded(cache: ReferenceCache, enc: TextEncoder, flat: list[str], digest: str) -> Encoded:
    """From the store, or encoded and stored; one process encodes, the others (a server's workers
    starting together) wait for the entry's lock and read what it stored."""
    with _entry_lock(cache.store().path(cache.key(enc, digest))):
        stored = _load_stored(cache, enc, digest, len(flat))
        if stored is not None:
            return stored
        encoded = enc.encode(flat)
        _store(cache, enc, digest, encoded)
        return encoded


def _encode_references(
    enc: TextEncoder, flat: list[str], cache: ReferenceCache | None = None
) -> tuple[Encoded, list[list[int]]]:
    """The references' vectors, encoded once per (encoder, reference texts) in this process, and
    read from / written to ``cache`` on disk when one is given."""
    digest = hashlib.sha256(json.dumps(flat, ensure_ascii=False).encode()).hexdigest()
    key = (enc.signature(), digest)
    if key not in _REF_CACHE:
        while len(_REF_CACHE) >= REF_CACHE_ENTRIES:
            _REF_CACHE.pop(next(iter(_REF_CACHE)))
        encoded = enc.encode(flat) if cache is None else _stored_or_encoded(cache, enc, flat, digest)
        _REF_CACHE[key] = (encoded, [encoded.ids[encoded.rows(i)].tolist() for i in range(len(encoded))])
    return _REF_CACHE[key]


def clear_reference_cache() -> None:
    _REF_CACHE.clear()


def _encoder(opts: TextMetricOptions) -> TextEncoder:
    return get_encoder(opts.encoder, layer=opts.layer, device=opts.device, batch_size=opts.batch_size)


def warm_references(
    opts: TextMetricOptions, references: Sequence[Sequence[str]], cache: ReferenceCache | None = None
) -> int:
    """Load the encoder and encode ``references`` (per video, its reference texts) into this
    process's reference cache, exactly as :func:`embedding_statistics` will look them up, so that
    scoring a system on them later encodes only its candidates (the leaderboard worker calls this
    once at start, per kind, before taking any submission). Returns the number of texts."""
    flat = [normalize(t) for r in references for t in r]
    _encode_references(_encoder(opts), flat, cache)
    return len(flat)


def embedding_statistics(
    opts: TextMetricOptions,
    vids: Sequence[str],
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    omega: Sequence[Sequence[Sequence[float]]] | None = None,
    *,
    acter: bool = True,
    encoder: TextEncoder | None = None,
    cache: ReferenceCache | None = None,
) -> EmbeddingStats:
    """Per-video BERTScore (and ACTEr-r when ``acter``) of ``candidates`` against ``references``.

    Args:
        opts: encoder and metric settings.
        vids: video ids (one per candidate).
        candidates: one generated text per video.
        references: the video's reference texts.
        omega: per video, per reference, per character of the normalised reference: the share of
            annotators who marked it attractive; None: uniform weights (``weights:uniform``).
        acter: compute ACTEr-r (titles).
        encoder: an already loaded encoder (default: :func:`get_encoder` for ``opts``).
        cache: keep the reference embeddings on disk (None: only in this process).
    """
    enc = encoder or _encoder(opts)
    refs_n = [[normalize(t) for t in r] for r in references]
    cands_n = [normalize(c) for c in candidates]
    flat = [t for r in refs_n for t in r]
    ref_enc, ref_ids = _encode_references(enc, flat, cache)
    distinct = list(dict.fromkeys(cands_n))
    cand_enc = enc.encode(distinct)
    where = {c: i for i, c in enumerate(distinct)}
    idf = idf_table(ref_ids) if opts.idf else None
    baseline, baseline_name = _baseline(opts, enc)
    n = len(vids)
    p, r, f, af = (np.zeros(n) for _ in range(4))
    start = 0
    for v in range(n):
        k = len(refs_n[v])
        if k == 0:
            raise DataError("a video has no references for BERTScore", vid=vids[v])
        rows = slice(int(ref_enc.offsets[start]), int(ref_enc.offsets[start + k]))
        offs = (ref_enc.offsets[start : start + k] - ref_enc.offsets[start]).astype(np.int64)
        special = ref_enc.special[rows]
        base = token_weights(ref_enc.ids[rows], special, idf)
        weights = [base]
        if acter and omega is not None:
            om = np.concatenate(
                [
                    token_omega(
                        ref_enc.spans[ref_enc.rows(start + j)],
                        omega[v][j],
                        ref_enc.special[ref_enc.rows(start + j)],
                    )
                    for j in range(k)
                ]
            )
            weights.append(acter_weights(base, om, special, opts.eps, opts.rule))
        c = cand_enc.rows(where[cands_n[v]])
        cw = token_weights(cand_enc.ids[c], cand_enc.special[c], idf)
        prec, recalls = match(cand_enc.vectors[c], ref_enc.vectors[rows], cw, weights, offs)
        p[v], r[v], f[v] = prec.max(), recalls[0].max(), harmonic(prec, recalls[0]).max()
        af[v] = harmonic(prec, recalls[-1]).max()
        start += k
    common = f"enc:{enc.signature()},idf:{'on' if opts.idf else 'off'},rescale:{baseline_name},norm:{NORMALIZER_NAME}"
    sigs = {"BERTScore": f"{BERTSCORE_VERSION},{common}"}
    if acter:
        w = "uniform" if omega is None else f"omega,eps:{opts.eps:g},rule:{opts.rule}"
        sigs["ACTEr-r"] = f"{ACTER_VERSION},weights:{w},{common}"
    return EmbeddingStats(list(vids), p, r, f, af if acter else None, baseline, sigs)


def _check_omega_row(vid: str, titles: list[str], om: Any) -> list[list[float]] | None:
    if om is None:
        return None
    if len(om) != len(titles):
        raise DataError(f"{OMEGA_COLUMN} has {len(om)} lists for {len(titles)} titles", vid=vid)
    return [list(x) for x in om]


def load_omega(
    data_dir: str | os.PathLike[str], split: str, vids: Sequence[str], n_refs: Sequence[int]
) -> list[list[list[float]]] | None:
    """Per video (in ``vids`` order), per reference title (the first ``n_refs``), per character:
    omega from the split's ``title_omega`` column; None when the dataset has none (older shards,
    or a release built without ``--attractiveness``). A split where only some videos have omega is
    an error naming the first without."""
    import pyarrow.parquet as pq

    from create_bench.data.shards import open_dataset, read_table

    files = open_dataset(data_dir).files(split)
    if OMEGA_COLUMN not in pq.read_schema(files[0]).names:
        return None
    cols = read_table(data_dir, split, columns=["vid", "titles", OMEGA_COLUMN]).to_pydict()
    by_vid = {
        v: _check_omega_row(v, t or [], o) for v, t, o in zip(cols["vid"], cols["titles"], cols[OMEGA_COLUMN])
    }
    have = [by_vid.get(v) is not None for v in vids]
    if not any(have):
        return None
    if not all(have):
        missing = next(v for v, h in zip(vids, have) if not h)
        raise DataError(
            f"{OMEGA_COLUMN} is present for some videos of {split!r} but not this one", vid=missing
        )
    return [by_vid[v][:k] for v, k in zip(vids, n_refs)]  # type: ignore[index]
