"""Honest baselines (layer 3): the floors every CREATE number should be read against.

- ``random``: seeded random unit embeddings (a pure function of seed + vid or text, so batching and
  order never change them); generation returns a training title/caption drawn with the seed.
- ``raw-title``: generation returns the uploader's ``raw_title``; retrieval is TF-IDF cosine between
  the query text and the video's raw title + tags (jieba tokens, vocabulary and IDF fitted on train).
- ``nearest-neighbour``: a simple frame feature space (colour histogram, a tiny mean frame, a motion
  map); generation copies the title/caption of the nearest training video; retrieval maps text into
  the same space with a ridge regression from TF-IDF, fitted on the training (text, video) pairs.

They read training data only from the ``train`` split (never the split under evaluation) and use
layer-2 readers (``data.shards``, ``video.decoding``) rather than the layer-4 loader.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from create_bench.errors import DataError, ModelError, VideoDecodeError
from create_bench.models.base import BaseModel, ModelContext, ModelMeta

if TYPE_CHECKING:
    from create_bench.features.store import FeatureKey, FeatureStore

log = logging.getLogger(__name__)

#: The split baselines learn from. Evaluation never reads references of the split it scores.
TRAIN_SPLIT = "train"
#: Seconds per training video before its decoder is killed (the video is then skipped).
TRAIN_DECODE_TIMEOUT = 60.0


# --------------------------------------------------------------------------------------------
# Text features shared by the baselines


_TOKENIZER: Any = None


def tokenize(text: str) -> list[str]:
    """The benchmark's jieba tokens (normalised as for scoring), keeping only tokens with a letter,
    digit or CJK character: punctuation, symbols and emoji carry no retrieval signal here."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from create_bench.text.tokenizers import get_tokenizer

        _TOKENIZER = get_tokenizer("jieba")
    return [t for t in _TOKENIZER(text) if _is_content(t)]


def _is_content(token: str) -> bool:
    return any(unicodedata.category(c)[0] in "LN" for c in token)


class TfIdf:
    """A small TF-IDF vectoriser over token lists (sublinear tf, smoothed idf, L2-normalised rows).

    >>> v = TfIdf(max_features=10).fit([["红色", "小猫"], ["蓝色", "小猫"]])
    >>> m = v.transform([["红色", "小猫"], ["没有"]])
    >>> m.shape, round(float((m[0] ** 2).sum()), 6), float(m[1].sum())
    ((2, 3), 1.0, 0.0)
    """

    def __init__(self, max_features: int = 4096, min_df: int = 1):
        self.max_features = max_features
        self.min_df = min_df
        self.vocab: dict[str, int] = {}
        self.idf = np.zeros(0, dtype=np.float32)

    def fit(self, docs: Iterable[Sequence[str]]) -> TfIdf:
        df: Counter[str] = Counter()
        n = 0
        for doc in docs:
            n += 1
            df.update(set(doc))
        # Most frequent first, ties by token: deterministic whatever the input order of equal counts.
        kept = sorted((t for t, c in df.items() if c >= self.min_df), key=lambda t: (-df[t], t))
        kept = kept[: self.max_features]
        self.vocab = {t: i for i, t in enumerate(sorted(kept))}
        idf = np.empty(len(self.vocab), dtype=np.float64)
        for t, i in self.vocab.items():
            idf[i] = math.log((1 + n) / (1 + df[t])) + 1.0
        self.idf = idf.astype(np.float32)
        return self

    @property
    def dim(self) -> int:
        return len(self.vocab)

    def transform(self, docs: Sequence[Sequence[str]]) -> np.ndarray:
        """Rows L2-normalised; a document with no known token is a zero row."""
        out = np.zeros((len(docs), self.dim), dtype=np.float32)
        for r, doc in enumerate(docs):
            counts = Counter(t for t in doc if t in self.vocab)
            for t, c in counts.items():
                out[r, self.vocab[t]] = (1.0 + math.log(c)) * self.idf[self.vocab[t]]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


def _train_table(ctx: ModelContext, columns: list[str]) -> Any:
    from create_bench.data.shards import read_table

    table = read_table(ctx.data_dir, TRAIN_SPLIT, columns=columns)
    if table.num_rows == 0:
        raise DataError(
            f"split {TRAIN_SPLIT!r} is empty: the baselines learn from it", path=str(ctx.data_dir)
        )
    return table


def _seed_rng(*parts: object) -> np.random.Generator:
    """A generator that is a pure function of its parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def _flat_pool(lists: Iterable[Any]) -> list[str]:
    return [t for texts in lists for t in (texts or []) if isinstance(t, str) and t.strip()]


# --------------------------------------------------------------------------------------------
# random


class RandomModel(BaseModel):
    """Seeded random embeddings and random training texts: the chance floor.

    Args:
        seed: the random seed (embeddings and draws are pure functions of it).
        dim: embedding dimension.
    """

    meta = ModelMeta(
        name="random",
        version="1",
        description="seeded random unit embeddings; generation draws a random training title/caption",
        params=0,
        training_data=("CREATE train split (texts only, for generation)",),
        create_configs=("train",),
        license="Apache-2.0",
        inputs="none",
    )

    def __init__(self, seed: int = 0, dim: int = 64):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.seed = seed
        self.dim = dim
        self.pool: dict[str, list[str]] = {"title": [], "caption": []}

    def setup(self, ctx: ModelContext) -> None:
        table = _train_table(ctx, ["vid", "titles", "captions"])
        self.pool = {
            "title": _flat_pool(table.column("titles").to_pylist()),
            "caption": _flat_pool(table.column("captions").to_pylist()),
        }

    def _unit(self, *key: object) -> np.ndarray:
        v = _seed_rng(self.seed, *key).standard_normal(self.dim)
        return (v / np.linalg.norm(v)).astype(np.float32)

    def encode_videos(self, batch: dict[str, Any]) -> np.ndarray:
        return np.stack([self._unit("video", vid) for vid in batch["vid"]])

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return (
            np.stack([self._unit("text", t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        )

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        pool = self.pool.get(kind) or []
        if not pool:
            raise ModelError(f"random: no training {kind}s to draw from (was setup() called?)")
        return [pool[int(_seed_rng(self.seed, kind, vid).integers(len(pool)))] for vid in batch["vid"]]


# --------------------------------------------------------------------------------------------
# raw-title


def _video_doc(raw_title: str, tags: Sequence[str] | None, use_tags: bool) -> list[str]:
    doc = tokenize(raw_title or "")
    if use_tags:
        for tag in tags or []:
            doc += tokenize(tag)
    return doc


class RawTitleModel(BaseModel):
    """The uploader's own words: ``raw_title`` as the generated title/caption, TF-IDF for retrieval.

    Args:
        max_features: vocabulary size (most document-frequent jieba tokens of the training texts).
        use_tags: add the video's tags to its raw title for retrieval.
    """

    meta = ModelMeta(
        name="raw-title",
        version="1",
        description="generation: the raw uploader title; retrieval: TF-IDF (jieba) of query vs raw title + tags",
        params=0,
        training_data=("CREATE train split (TF-IDF vocabulary and IDF only)",),
        create_configs=("train",),
        license="Apache-2.0",
        inputs="none",
    )

    #: What generation returns when a video has neither a raw title nor tags ("video").
    EMPTY_FALLBACK = "视频"

    def __init__(self, max_features: int = 4096, use_tags: bool = True):
        if max_features < 1:
            raise ValueError(f"max_features must be >= 1, got {max_features}")
        self.max_features = max_features
        self.use_tags = use_tags
        self.tfidf = TfIdf(max_features)

    def setup(self, ctx: ModelContext) -> None:
        table = _train_table(ctx, ["raw_title", "tags", "titles", "captions"])
        cols = {c: table.column(c).to_pylist() for c in ("raw_title", "tags", "titles", "captions")}
        docs = [_video_doc(r, t, self.use_tags) for r, t in zip(cols["raw_title"], cols["tags"])]
        docs += [tokenize(x) for x in _flat_pool(cols["titles"]) + _flat_pool(cols["captions"])]
        self.tfidf.fit(docs)
        log.info(
            "raw-title: TF-IDF vocabulary of %d tokens from %d training documents", self.tfidf.dim, len(docs)
        )

    def encode_videos(self, batch: dict[str, Any]) -> np.ndarray:
        return self.tfidf.transform(
            [_video_doc(r, t, self.use_tags) for r, t in zip(batch["raw_title"], batch["tags"])]
        )

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.tfidf.transform([tokenize(t) for t in texts])

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        out = []
        for raw, tags in zip(batch["raw_title"], batch["tags"]):
            text = (raw or "").strip() or " ".join(tags or []).strip() or self.EMPTY_FALLBACK
            out.append(text)
        return out


# --------------------------------------------------------------------------------------------
# nearest-neighbour


def frame_features(frames: Any, bins: int = 4, grid: int = 4) -> np.ndarray:
    """Simple per-video features from uint8 frames [B, T, H, W, 3] -> float32 [B, F].

    Concatenates: the square root of the joint RGB histogram (``bins``^3, Hellinger form, so cosine
    compares distributions), the mean frame average-pooled to ``grid`` x ``grid`` x 3, and the mean
    absolute difference between consecutive frames pooled to ``grid`` x ``grid`` (where things move).

    One vector per video, on purpose generic: it is not the ``fixed`` frame encoder
    (:mod:`create_bench.synthetic.fixed_encoder`), whose per-frame features (foreground masks, shape
    and motion descriptors) are modelled on how the synthetic sample draws, and neither can be
    written through the other without changing its numbers (different histogram normalisation and
    working resolution, mean frame vs per-frame thumbnails, whole-frame motion vs foreground shift).
    """
    x = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ModelError(f"nearest-neighbour: expected frames [B, T, H, W, 3], got shape {tuple(x.shape)}")
    b, t, h, w, _ = x.shape
    q = (x.astype(np.int64) * bins) // 256  # per channel bin in [0, bins)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    hist = np.stack([np.bincount(idx[i].ravel(), minlength=bins**3) for i in range(b)]).astype(np.float64)
    hist = np.sqrt(hist / max(1, t * h * w))
    xf = x.astype(np.float32) / 255.0
    mean_frame = _pool(xf.mean(axis=1), grid).reshape(b, -1)
    if t > 1:
        motion = _pool(np.abs(np.diff(xf, axis=1)).mean(axis=(1, 4))[..., None], grid).reshape(b, -1)
    else:
        motion = np.zeros((b, grid * grid), np.float32)
    return np.concatenate([hist, mean_frame, motion], axis=1).astype(np.float32)


def _pool(img: np.ndarray, grid: int) -> np.ndarray:
    """Average-pool [B, H, W, C] to [B, grid, grid, C] over (nearly) equal cells."""
    b, h, w, c = img.shape
    ys = np.linspace(0, h, grid + 1).round().astype(int)
    xs = np.linspace(0, w, grid + 1).round().astype(int)
    out = np.zeros((b, grid, grid, c), np.float32)
    for i in range(grid):
        for j in range(grid):
            cell = img[:, ys[i] : max(ys[i + 1], ys[i] + 1), xs[j] : max(xs[j + 1], xs[j] + 1)]
            out[:, i, j] = cell.mean(axis=(1, 2))
    return out


def _l2(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0).astype(np.float32)


class NearestNeighbourModel(BaseModel):
    """Copy the texts of the closest training video; retrieve through a ridge map from text to frames.

    Args:
        bins: colour histogram bins per channel.
        grid: spatial grid of the tiny mean frame and the motion map.
        ridge: L2 penalty of the text -> video-feature regression.
        max_features: TF-IDF vocabulary size.
        frame_size: frames are decoded at this square size (pixels); the features only need a few.
    """

    meta = ModelMeta(
        name="nearest-neighbour",
        version="1",
        description=(
            "frame features (colour histogram, tiny mean frame, motion map); generation copies the nearest "
            "training video's text; retrieval via ridge regression from TF-IDF to the feature space"
        ),
        params=0,
        training_data=("CREATE train split (videos, titles, captions)",),
        create_configs=("train",),
        license="Apache-2.0",
        inputs="frames",
        frames="uniform-center@8",
        frame_size=(32, 32),
    )

    def __init__(
        self, bins: int = 4, grid: int = 4, ridge: float = 1.0, max_features: int = 4096, frame_size: int = 32
    ):
        if bins < 1 or grid < 1 or frame_size < grid or ridge <= 0:
            raise ValueError("need bins >= 1, grid >= 1, frame_size >= grid and ridge > 0")
        self.bins, self.grid, self.ridge, self.frame_size = bins, grid, ridge, frame_size
        self.tfidf = TfIdf(max_features)
        self.meta = dataclasses.replace(type(self).meta, frame_size=(frame_size, frame_size))
        self.mu = np.zeros(0, np.float32)
        self.sigma = np.ones(0, np.float32)
        self.train_feats = np.zeros((0, 0), np.float32)
        self.train_texts: dict[str, list[str]] = {"title": [], "caption": []}
        self.weights = np.zeros((0, 0), np.float32)

    # -- training data ----------------------------------------------------------------------
    def _raw_features(self, frames: Any) -> np.ndarray:
        return frame_features(frames, self.bins, self.grid)

    def _cache_key(self, data_dir: Path, cache_dir: Path) -> tuple[FeatureStore, FeatureKey]:
        """The feature store (the context's ``cache_dir``) and key of the training features."""
        from create_bench.data.shards import open_dataset
        from create_bench.features.store import FeatureKey, FeatureStore
        from create_bench.video.sampling import policy_signature

        encoder = f"nearest-neighbour-frame-features/v{self.meta.version}:bins={self.bins}:grid={self.grid}"
        size = (self.frame_size, self.frame_size)
        fp = open_dataset(data_dir).fingerprint
        key = FeatureKey(fp, TRAIN_SPLIT, policy_signature(str(self.meta.frames)), size, encoder)
        return FeatureStore(cache_dir, prefix="nearest-neighbour-train-"), key

    def _train_features(
        self, ctx: ModelContext
    ) -> tuple[list[str], np.ndarray, list[list[str]], list[list[str]]]:
        """Decode the training videos with the model's own frame policy; cached in the feature store
        (:mod:`create_bench.features.store`) under ``ctx.cache_dir``, keyed by data fingerprint, frame
        policy, frame size and the feature settings."""
        from tqdm.auto import tqdm

        from create_bench.data.shards import iter_rows, open_dataset, video_source
        from create_bench.video.decoding import decode
        from create_bench.video.sampling import sample_indices

        store, key = None, None
        if ctx.cache_dir is not None:
            store, key = self._cache_key(ctx.data_dir, ctx.cache_dir)
            hit = store.get(key)
            if hit is not None:
                return hit.vids, hit.arrays["feats"], hit.extra["titles"], hit.extra["captions"]
        vids, feats, titles, captions = [], [], [], []
        skipped = 0
        cols = ["vid", "video", "num_frames", "titles", "captions"]
        rows = iter_rows(ctx.data_dir, TRAIN_SPLIT, columns=cols, rank=0, world_size=1)
        total = open_dataset(ctx.data_dir).num_rows(TRAIN_SPLIT)
        for row in tqdm(
            rows, total=total, desc="nearest-neighbour: training videos", unit="video", disable=None
        ):
            idx = sample_indices(int(row["num_frames"]), self.meta.frames)
            try:
                frames = decode(
                    video_source(row, ctx.data_dir),
                    idx,
                    size=(self.frame_size, self.frame_size),
                    vid=row["vid"],
                    timeout=TRAIN_DECODE_TIMEOUT,  # in a killable worker: a hanging file cannot stall setup
                )
            except VideoDecodeError as exc:  # a broken training video only costs one neighbour
                skipped += 1
                log.warning("nearest-neighbour: skipping training video: %s", exc)
                continue
            vids.append(row["vid"])
            feats.append(self._raw_features(np.asarray(frames)[None])[0])
            titles.append(list(row["titles"] or []))
            captions.append(list(row["captions"] or []))
        if not vids:
            raise DataError(f"nearest-neighbour: no decodable training video in split {TRAIN_SPLIT!r}")
        if skipped:
            log.warning("nearest-neighbour: %d training video(s) skipped", skipped)
        arr = np.stack(feats).astype(np.float32)
        if store is not None and key is not None:
            from create_bench.features.store import StoredFeatures

            extra = {"titles": titles, "captions": captions}
            store.put(key, StoredFeatures(list(vids), {"feats": arr}, extra))
        return vids, arr, titles, captions

    def setup(self, ctx: ModelContext) -> None:
        vids, raw, titles, captions = self._train_features(ctx)
        self.mu = raw.mean(axis=0)
        self.sigma = raw.std(axis=0) + 1e-6
        self.train_feats = _l2((raw - self.mu) / self.sigma)
        self.train_texts = {
            "title": [t[0] if t else "" for t in titles],
            "caption": [c[0] if c else "" for c in captions],
        }
        # Ridge regression from TF-IDF of each training text to its video's standardised features.
        pairs = [
            (tokenize(x), i)
            for i in range(len(vids))
            for x in (*titles[i], *captions[i])
            if isinstance(x, str) and x.strip()
        ]
        if not pairs:
            raise DataError(
                f"nearest-neighbour: split {TRAIN_SPLIT!r} has no titles or captions to learn from"
            )
        self.tfidf.fit([d for d, _ in pairs])
        self.weights = self._fit_ridge([d for d, _ in pairs], self.train_feats[[i for _, i in pairs]])
        log.info(
            "nearest-neighbour: %d training videos, %d-d features, %d text pairs, vocabulary %d",
            len(vids),
            raw.shape[1],
            len(pairs),
            self.tfidf.dim,
        )

    def _fit_ridge(self, docs: list[list[str]], targets: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Solve (X'X + ridge I) W = X'Y, accumulating X'X in chunks (memory O(V^2), not O(N V))."""
        v = self.tfidf.dim
        xtx = np.zeros((v, v), np.float64)
        xty = np.zeros((v, targets.shape[1]), np.float64)
        for s in range(0, len(docs), chunk):
            x = self.tfidf.transform(docs[s : s + chunk]).astype(np.float64)
            xtx += x.T @ x
            xty += x.T @ targets[s : s + chunk]
        xtx[np.diag_indices(v)] += self.ridge
        return np.linalg.solve(xtx, xty).astype(np.float32)

    # -- protocol -----------------------------------------------------------------------------
    def encode_videos(self, batch: dict[str, Any]) -> np.ndarray:
        return _l2((self._raw_features(batch["frames"]) - self.mu) / self.sigma)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return _l2(self.tfidf.transform([tokenize(t) for t in texts]) @ self.weights)

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        if kind not in self.train_texts:
            raise ModelError(f"nearest-neighbour: unknown generation kind {kind!r}")
        pool = self.train_texts[kind]
        usable = np.array([bool(t.strip()) for t in pool])
        if not usable.any():
            raise ModelError(f"nearest-neighbour: no training {kind}s to copy")
        sims = self.encode_videos(batch) @ self.train_feats.T
        sims[:, ~usable] = -np.inf
        return [pool[int(j)] for j in sims.argmax(axis=1)]
