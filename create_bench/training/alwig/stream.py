"""ALWIG training data streamed from Parquet feature shards, each rank reading only its own rows.

The in-memory path of the trainer (``features.py``) holds a split's features as one dense tensor on every rank; at
CREATE-10M scale (10M videos x 8 frames x 512 float32 = 164 GB) no rank can. This module feeds a
training phase from the dataset's feature shards (``features/<set>/``, as ``create-bench extract``
writes them; ``encoder: features``) in an order that does not depend on the world size.

**Lanes.** A *unit* is one row group of one feature file. At the start of a phase the units are
permuted (seeded by the run seed and phase) and the concatenation of their rows is cut into
``lanes`` contiguous ranges of equal size (+-1); ``lanes`` is the global batch size. Lane ``p``
supplies position ``p`` of every global batch, so rank ``r`` of ``W`` owns lanes
``[r*lanes/W, (r+1)*lanes/W)`` - exactly the contiguous share of each global batch that DDP gives
it - and reads only those rows: 1/W of the split, never the rest.

**Epoch order.** Per epoch each lane permutes its pieces (the unit slices it owns), keeps its
trainable rows, cuts them into blocks of ``block`` consecutive rows and permutes each block: a
shuffle window of ``block`` rows per lane (``lanes x block`` rows over the global batch), with
sequential, mostly unit-sized reads. An epoch has ``S`` steps, the smallest number of trainable rows
of any lane; a longer lane's last positions past ``S`` (at most one row per lane when no row is
filtered out; others in other epochs, as the pieces are reordered) sit that epoch out.

**Position.** Step ``k`` of an epoch consumes position ``k`` of every lane whatever the world size,
so a checkpoint records ``k`` and a run resumed with another world size (same batch size) reads
every remaining sample of the epoch exactly once, in the same order.

**Memory per rank.** Two windows of features (the one being trained on and the next, read in a
background thread), each ``block x lanes/W`` videos, the decoded row groups a window shares with
the next (about one per lane), its own rows' texts (Arrow) and a few integers per row; nothing
grows with the split but the per-row part. Measured with CLIP-width rows (8 x 512 float32), 64
lanes per rank, block 64: about 350 MB above the interpreter for a 16k-video split, 400 MB for 64k.

Texts and tags come from the data shards (text columns only, never the video bytes), joined by
``vid``: a rank scans the split's text columns once per phase and keeps its own rows.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from create_bench.data.shards import row_groups
from create_bench.errors import ConfigError, DataError

#: Columns of the data shards a training phase reads (the video bytes never).
TEXT_COLUMNS = ("vid", "tags", "titles", "captions", "raw_title")
#: Feature files kept open at once by one rank.
_OPEN_FILES = 64

#: keep(raw_title, titles, captions) -> whether a row trains in a phase.
KeepFn = Callable[[str, list[str], list[str]], bool]


# ------------------------------------------------------------------------------------ pure order
@dataclass(frozen=True)
class Piece:
    """Rows ``[lo, hi)`` of unit number ``unit``."""

    unit: int
    lo: int
    hi: int


def assign_lanes(unit_rows: Sequence[int], lanes: int, seed: Sequence[int]) -> list[list[Piece]]:
    """Cut the rows of the units, taken in a seeded order, into ``lanes`` contiguous ranges.

    Lane ``p`` gets rows ``[p*N//lanes, (p+1)*N//lanes)`` of that order, as pieces of units.

    >>> [[(x.unit, x.lo, x.hi) for x in lane] for lane in assign_lanes([3, 2], 2, [0])]
    [[(0, 0, 2)], [(0, 2, 3), (1, 0, 2)]]
    """
    if lanes < 1:
        raise ConfigError(f"lanes must be >= 1, got {lanes}")
    order = np.random.default_rng(list(seed)).permutation(len(unit_rows))
    total = int(sum(unit_rows))
    bounds = [p * total // lanes for p in range(lanes + 1)]
    out: list[list[Piece]] = [[] for _ in range(lanes)]
    pos, lane = 0, 0  # pos: first row of the current unit in the permuted concatenation
    for u in order:
        n = int(unit_rows[u])
        lo = 0
        while lo < n:
            while bounds[lane + 1] <= pos + lo:  # the lane is full (or empty: fewer rows than lanes)
                lane += 1
            hi = min(n, bounds[lane + 1] - pos)
            out[lane].append(Piece(int(u), lo, hi))
            lo = hi
        pos += n
    return out


def lane_order(piece_rows: Sequence[np.ndarray], block: int, seed: Sequence[int]) -> np.ndarray:
    """One lane's order for an epoch: its pieces permuted, rows cut into blocks of ``block``,
    each block permuted (``piece_rows[i]``: the ids of the trainable rows of piece ``i``)."""
    rng = np.random.default_rng(list(seed))
    perm = rng.permutation(len(piece_rows))
    seq = (
        np.concatenate([piece_rows[i] for i in perm]).astype(np.int64)
        if len(piece_rows)
        else np.zeros(0, np.int64)
    )
    # a random key per row, sorted within its block: a uniform permutation of every block
    keys = np.arange(len(seq)) // block + rng.random(len(seq))
    return seq[np.argsort(keys, kind="stable")]


def merge_moments(
    parts: Iterable[tuple[float, np.ndarray, np.ndarray]],
) -> tuple[float, np.ndarray, np.ndarray]:
    """Combine (count, mean, sum of squared deviations) of disjoint parts (Chan et al.'s update)."""
    n, mean, m2 = 0.0, None, None
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        if mean is None or m2 is None:
            n, mean, m2 = float(nb), np.array(mb, np.float64), np.array(m2b, np.float64)
            continue
        tot = n + nb
        delta = mb - mean
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta * delta * (n * nb / tot)
        n = tot
    if mean is None or m2 is None:
        return 0.0, np.zeros(0), np.zeros(0)
    return n, mean, m2


# ---------------------------------------------------------------------------------- reading
def scan_texts(
    data_dir: str | os.PathLike[str],
    split: str,
    vids: pa.Array | None = None,
    columns: Sequence[str] = TEXT_COLUMNS,
    batch_size: int = 65536,
) -> Iterator[pa.RecordBatch]:
    """Stream a split's text columns (never the video bytes), only rows whose vid is in ``vids``."""
    from create_bench.data.shards import open_dataset

    info = open_dataset(data_dir)
    for f in info.files(split):
        pf = pq.ParquetFile(f)
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"data shard lacks column(s) {missing}", path=str(f))
        for batch in pf.iter_batches(batch_size=batch_size, columns=list(columns)):
            if vids is not None:
                batch = batch.filter(pc.is_in(batch.column("vid"), value_set=vids))
            if batch.num_rows:
                yield batch


def unit_features(table: pa.Table, num_frames: int, dim: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """float32 [n, num_frames, dim] and bool mask [n, num_frames] of a feature row group (columns
    ``vid``, ``features``), as ``features.py`` builds them from ``read_features``: more stored frames
    than ``num_frames`` are spread evenly, fewer are padded with zeros."""
    col = table.column("features").combine_chunks()
    vids = table.column("vid").to_pylist()
    n = len(col)
    if col.null_count:
        bad = vids[int(np.flatnonzero(np.asarray(col.is_null()))[0])]
        raise DataError("feature row is null", path=str(path), vid=bad)
    frames_per_row = np.asarray(pc.list_value_length(col), dtype=np.int64)
    inner = col.flatten()
    widths = np.asarray(pc.list_value_length(inner).fill_null(-1), dtype=np.int64)
    if (widths != dim).any():
        frame = int(np.flatnonzero(widths != dim)[0])
        row = int(np.searchsorted(np.cumsum(frames_per_row), frame, side="right"))
        raise DataError(
            f"expected [T, {dim}] features, got a frame of width {int(widths[frame])}",
            path=str(path),
            vid=vids[row],
        )
    values = inner.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    frames = values.reshape(-1, dim)
    feats = np.zeros((n, num_frames, dim), np.float32)
    mask = np.zeros((n, num_frames), bool)
    if n and (frames_per_row == num_frames).all():
        feats[:] = frames.reshape(n, num_frames, dim)
        mask[:] = True
        return feats, mask
    starts = np.concatenate([[0], np.cumsum(frames_per_row)])
    for i in range(n):
        a = frames[starts[i] : starts[i + 1]]
        if a.shape[0] > num_frames:  # the same spread as features.py's in-memory reader
            a = a[torch.linspace(0, a.shape[0] - 1, num_frames).round().long().numpy()]
        feats[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return feats, mask


@dataclass
class Window:
    """Rows of steps ``[first, stop)`` of an epoch: step ``k`` uses rows
    ``[(k - first) * lanes, (k - first + 1) * lanes)``, one per lane of this rank, in lane order."""

    first: int
    stop: int
    lanes: int
    vids: list[str]
    feats: torch.Tensor  # float32 [rows, num_frames, dim]
    mask: torch.Tensor  # bool [rows, num_frames]
    tags: list[list[str]]
    titles: list[list[str]]
    captions: list[list[str]]
    raw_titles: list[str]


class LaneStream:
    """One rank's lanes of one training phase (see the module docstring).

    Construction reads the vids of the rank's rows and the split's text columns (keeping the rank's
    rows). Then :attr:`local_steps` is the fewest trainable rows of the rank's lanes; the caller
    takes the minimum over ranks (an all-reduce) and passes it to :meth:`set_steps` before
    :meth:`windows`.

    Args:
        data_dir: the dataset.
        split: the phase's split.
        feature_set: the dataset's feature set (its files for ``split``, in manifest order).
        num_frames, feature_dim: the model's frame count and feature width.
        lanes: lanes of the order (the global batch size).
        block: rows per lane block (the shuffle window).
        seed: the phase's seed (e.g. ``[cfg.seed, phase index]``).
        rank, world_size: this process; ``lanes % world_size == 0``.
        keep: which rows train in this phase (None: all).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        split: str,
        *,
        feature_set: str,
        num_frames: int,
        feature_dim: int,
        lanes: int,
        block: int,
        seed: Sequence[int],
        rank: int,
        world_size: int,
        keep: KeepFn | None = None,
    ):
        from create_bench.data.shards import open_dataset

        if block < 1:
            raise ConfigError(f"stream block must be >= 1, got {block}")
        if lanes % world_size:
            raise ConfigError(f"lanes ({lanes}) must be divisible by the world size ({world_size})")
        self.data_dir, self.split = Path(data_dir), split
        self.num_frames, self.dim, self.block = num_frames, feature_dim, block
        self.seed = [int(s) for s in seed]
        self.lanes, self.rank, self.world_size = lanes, rank, world_size
        self._files: OrderedDict[Path, pq.ParquetFile] = OrderedDict()
        info = open_dataset(data_dir)
        self.units = row_groups(info.feature_files(feature_set, split))
        total = sum(u.rows for u in self.units)
        if total != info.num_rows(split):
            raise DataError(
                f"feature set {feature_set!r} has {total} rows for split {split!r}, "
                f"the split has {info.num_rows(split)}",
                path=str(self.units[0].file if self.units else data_dir),
            )
        per = lanes // world_size
        self.my_lanes = assign_lanes([u.rows for u in self.units], lanes, [*self.seed, 0])[
            rank * per : (rank + 1) * per
        ]
        # the rank's rows, lane by lane, piece by piece ("local row ids" index these arrays)
        unit_of, row_of, spans = [], [], []
        n = 0
        for lane in self.my_lanes:
            lane_spans = []
            for x in lane:
                unit_of.append(np.full(x.hi - x.lo, x.unit, np.int64))
                row_of.append(np.arange(x.lo, x.hi, dtype=np.int64))
                lane_spans.append((n, n + x.hi - x.lo))
                n += x.hi - x.lo
            spans.append(lane_spans)
        self.row_unit = np.concatenate(unit_of) if unit_of else np.zeros(0, np.int64)
        self.row_in_unit = np.concatenate(row_of) if row_of else np.zeros(0, np.int64)
        self.vids = self._read_vids()
        self.texts, self.row_text = self._join_texts()
        trainable = self._trainable(keep)
        self.piece_rows = [
            [s + np.flatnonzero(trainable[s:e]) for s, e in lane_spans] for lane_spans in spans
        ]
        counts = [sum(len(r) for r in lane) for lane in self.piece_rows]
        #: The fewest trainable rows of this rank's lanes (the epoch length it allows).
        self.local_steps = min(counts) if counts else 0
        #: Trainable rows of this rank.
        self.trainable_rows = int(sum(counts))
        self.steps: int | None = None

    # -- construction helpers
    def _file(self, path: Path) -> pq.ParquetFile:
        pf = self._files.get(path)
        if pf is None:
            pf = self._files[path] = pq.ParquetFile(path)
            if len(self._files) > _OPEN_FILES:
                self._files.popitem(last=False)
        else:
            self._files.move_to_end(path)
        return pf

    def _read_unit(self, u: int, columns: list[str]) -> pa.Table:
        unit = self.units[u]
        return self._file(unit.file).read_row_group(unit.row_group, columns=columns)

    def _read_vids(self) -> pa.Array:
        vids: list[pa.Array] = []
        for u, rows in _group_by_unit(self.row_unit, self.row_in_unit):
            col = self._read_unit(u, ["vid"]).column("vid").combine_chunks()
            vids.append(col.take(pa.array(rows)))
        # rows were grouped by unit: restore the rank's row order
        order = np.argsort(self.row_unit, kind="stable")
        flat = pa.concat_arrays(vids) if vids else pa.array([], pa.string())
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        out = flat.take(pa.array(inv))
        counts = pc.value_counts(out)
        dups = counts.filter(pc.greater(counts.field("counts"), 1))
        if len(dups):
            raise DataError(
                "the feature set lists a vid twice",
                path=str(self.units[0].file),
                vid=dups.field("values")[0].as_py(),
            )
        return out

    def _join_texts(self) -> tuple[pa.Table, np.ndarray]:
        # is_in hashes its value set on every call: scan in batches about as large as the set
        size = max(1 << 16, min(len(self.vids), 1 << 20))
        batches = list(scan_texts(self.data_dir, self.split, self.vids, batch_size=size))
        schema = batches[0].schema if batches else None
        texts = pa.Table.from_batches(batches, schema=schema) if batches else None
        if texts is None:
            if len(self.vids):
                raise DataError(
                    f"no row of split {self.split!r} matches the feature set's vids",
                    vid=str(self.vids[0]),
                    path=str(self.data_dir),
                )
            return pa.table({c: pa.array([], pa.string()) for c in TEXT_COLUMNS}), np.zeros(0, np.int64)
        idx = pc.index_in(self.vids, value_set=texts.column("vid"))
        if idx.null_count:
            missing = self.vids.filter(pc.is_null(idx)).to_pylist()
            raise DataError(
                f"{len(missing)} vid(s) of the feature set are not in split {self.split!r} "
                f"(first: {missing[:5]})",
                vid=missing[0],
                path=str(self.data_dir),
            )
        return texts, np.asarray(idx, dtype=np.int64)

    def _trainable(self, keep: KeepFn | None) -> np.ndarray:
        if keep is None:
            return np.ones(len(self.vids), bool)
        cols = [self.texts.column(c).to_pylist() for c in ("raw_title", "titles", "captions")]
        per_text = np.fromiter(
            (keep(r or "", list(t or []), list(c or [])) for r, t, c in zip(*cols)),
            bool,
            count=self.texts.num_rows,
        )
        return per_text[self.row_text]

    # -- epochs
    def set_steps(self, steps: int) -> None:
        """The epoch length agreed by every rank (the minimum of their :attr:`local_steps`)."""
        if not 0 < steps <= self.local_steps:
            raise DataError(
                f"streamed split {self.split!r}: {steps} steps per epoch agreed, this rank's lanes "
                f"allow {self.local_steps} (every lane needs at least one trainable row; the global "
                f"batch size is {self.lanes})",
                path=str(self.data_dir),
            )
        self.steps = steps

    def order(self, epoch: int) -> np.ndarray:
        """int64 [steps, lanes/W]: the local row each lane of this rank gives to each step."""
        if self.steps is None:
            raise RuntimeError("LaneStream.set_steps must be called before the epochs")
        first = self.rank * (self.lanes // self.world_size)
        cols = [
            lane_order(rows, self.block, [*self.seed, 1, epoch, first + i])[: self.steps]
            for i, rows in enumerate(self.piece_rows)
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((self.steps, 0), np.int64)

    def windows(self, epoch: int, start: int = 0, stop: int | None = None) -> Iterator[Window]:
        """Steps ``[start, stop)`` of ``epoch`` in windows that end on block boundaries; the next
        window is read in a background thread while the caller trains on the current one."""
        grid = self.order(epoch)
        stop = len(grid) if stop is None else min(stop, len(grid))
        bounds = []
        k = start
        while k < stop:
            end = min(stop, (k // self.block + 1) * self.block)
            bounds.append((k, end))
            k = end
        if not bounds:
            return
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alwig-stream") as pool:

            def submit(i: int) -> concurrent.futures.Future[Window]:
                nxt = grid[bounds[i + 1][0] : bounds[i + 1][1]] if i + 1 < len(bounds) else None
                return pool.submit(self._load, grid[bounds[i][0] : bounds[i][1]], bounds[i], nxt, cache)

            fut = submit(0)
            for i in range(len(bounds)):
                win = fut.result()
                if i + 1 < len(bounds):
                    fut = submit(i + 1)
                yield win

    def _load(
        self,
        rows: np.ndarray,
        span: tuple[int, int],
        next_rows: np.ndarray | None,
        cache: dict[int, tuple[np.ndarray, np.ndarray]],
    ) -> Window:
        flat = rows.reshape(-1)
        units = self.row_unit[flat]
        feats = np.empty((len(flat), self.num_frames, self.dim), np.float32)
        mask = np.empty((len(flat), self.num_frames), bool)
        order = np.argsort(units, kind="stable")
        for at in np.split(order, np.flatnonzero(np.diff(units[order])) + 1) if len(order) else []:
            u = int(units[at[0]])
            if u not in cache:
                unit = self.units[u]
                cache[u] = unit_features(
                    self._read_unit(u, ["vid", "features"]), self.num_frames, self.dim, unit.file
                )
            f, m = cache[u]
            feats[at] = f[self.row_in_unit[flat[at]]]
            mask[at] = m[self.row_in_unit[flat[at]]]
        # keep only the row groups the next window reads too (its lanes continue their pieces)
        keep = (
            set(np.unique(self.row_unit[next_rows.reshape(-1)]).tolist()) if next_rows is not None else set()
        )
        for u in list(cache):
            if u not in keep:
                del cache[u]
        t = self.texts.take(pa.array(self.row_text[flat]))
        return Window(
            first=span[0],
            stop=span[1],
            lanes=rows.shape[1],
            vids=self.vids.take(pa.array(flat)).to_pylist(),
            feats=torch.from_numpy(feats),
            mask=torch.from_numpy(mask),
            tags=[list(x or []) for x in t.column("tags").to_pylist()],
            titles=[list(x or []) for x in t.column("titles").to_pylist()],
            captions=[list(x or []) for x in t.column("captions").to_pylist()],
            raw_titles=[str(x or "") for x in t.column("raw_title").to_pylist()],
        )

    # -- statistics
    def feature_moments(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(count, mean, sum of squared deviations) of the real frames of all this rank's rows
        (trainable or not, as the in-memory path's feature statistics), in float64."""
        parts = []
        for u, rows in _group_by_unit(self.row_unit, self.row_in_unit):
            unit = self.units[u]
            f, m = unit_features(
                self._read_unit(u, ["vid", "features"]), self.num_frames, self.dim, unit.file
            )
            x = f[rows][m[rows]].astype(np.float64)
            if len(x):
                mean = x.mean(0)
                parts.append((float(len(x)), mean, ((x - mean) ** 2).sum(0)))
        return merge_moments(parts)


def _group_by_unit(row_unit: np.ndarray, row_in_unit: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(unit, its rows) for the rows of each unit, units in ascending order, rows in given order."""
    order = np.argsort(row_unit, kind="stable")
    su = row_unit[order]
    cuts = np.flatnonzero(np.diff(su)) + 1
    for part in np.split(order, cuts) if len(order) else []:
        yield int(row_unit[part[0]]), row_in_unit[part]
