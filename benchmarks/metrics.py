"""Metrics speed and memory: chunked tie-aware retrieval vs a CLIP4Clip-style full sort, and
captioning (tokenisation + pycocoevalcap scorers + per-video statistics) vs pycocoevalcap alone.

Full run (the CREATE test protocol size)::

    python benchmarks/metrics.py --data data/create-sample

(a) retrieval, 50,000 text queries x 5,000 videos, 512-d float32 embeddings, no ties:
    ours   = create_bench.metrics.retrieval.rank_statistics (row chunks, counts above/tied)
    base   = the full [50,000 x 5,000] similarity, ``argsort`` of every row, position of the target
    (CLIP4Clip's metrics sort the whole matrix the same way). Prints the time ratio (target >= 3x),
    the peak extra memory of ours (tracemalloc of numpy allocations and sampled RSS; target <= 1 GB)
    and whether the ranks are identical. Then 100,000 x 100,000 (``--big-dim``, default 64-d), whose
    full matrix alone would be 40 GB, in bounded memory.
(b) captioning, 5,000 videos x 10 references, BLEU-1..4, ROUGE-L, CIDEr: our total time vs
    pycocoevalcap's Bleu/Rouge/Cider ``compute_score`` on the same pre-tokenised text, with the
    tokenisation time shown separately; then 1,000 bootstrap resamples from the kept statistics.

``--quick`` runs small sizes (seconds). ``--data`` only supplies Chinese sentences for (b)
(its captions); a built-in phrase list is used when the directory is not a dataset.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser  # noqa: E402

from create_bench.metrics.captioning import caption_statistics, tokenize_all  # noqa: E402
from create_bench.metrics.retrieval import rank_statistics  # noqa: E402
from create_bench.text import get_tokenizer  # noqa: E402

GB = 1 << 30
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class PeakMemory:
    """Peak extra memory of a block: numpy allocations (tracemalloc) and sampled RSS (every 2 ms)."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self._stop = threading.Event()
        self.rss0 = rss()
        self.rss_peak = self.rss0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        tracemalloc.start()
        self.traced0 = tracemalloc.get_traced_memory()[0]
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss_peak = max(self.rss_peak, rss())
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        self.traced_peak = tracemalloc.get_traced_memory()[1] - self.traced0
        tracemalloc.stop()
        self._stop.set()
        self._thread.join()
        self.rss_peak = max(self.rss_peak, rss())
        self.rss_extra = self.rss_peak - self.rss0

    @property
    def extra(self) -> int:
        return max(self.traced_peak, self.rss_extra)

    def describe(self) -> str:
        return f"peak extra {self.extra / GB:.3f} GB (tracemalloc {self.traced_peak / GB:.3f}, RSS {self.rss_extra / GB:.3f})"


class Timer:
    """Wall and CPU time (all threads of this process) of a block, optionally its peak memory.

    On a shared machine wall time depends on the neighbours and CPU time much less: both are printed.
    """

    def __init__(self, memory: bool = False):
        self.mem = PeakMemory() if memory else None

    def __enter__(self) -> Timer:
        if self.mem:
            self.mem.__enter__()
        self._t, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall = time.perf_counter() - self._t
        self.cpu = time.process_time() - self._c
        if self.mem:
            self.mem.__exit__(*exc)

    def __str__(self) -> str:
        text = f"{self.wall:8.2f} s (CPU {self.cpu:7.2f} s)"
        return text + (f"  {self.mem.describe()}" if self.mem else "")


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def full_sort_ranks(queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The baseline: the whole similarity matrix, every row sorted, the target's position (1-based)."""
    sim = queries @ gallery.T
    np.negative(sim, out=sim)  # descending order via an ascending sort, in place
    order = np.argsort(sim, axis=1)
    del sim
    return np.nonzero(order == targets[:, None])[1] + 1


def retrieval_benchmark(n_q: int, n_g: int, dim: int, big_n: int, big_dim: int) -> None:
    print(f"== retrieval: {n_q:,} queries x {n_g:,} gallery, {dim}-d float32 "
          f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")  # fmt: skip
    rng = np.random.default_rng(0)
    queries, gallery = unit_rows(rng, n_q, dim), unit_rows(rng, n_g, dim)
    targets = np.repeat(np.arange(n_g), n_q // n_g + 1)[:n_q]
    rank_statistics(queries[:256], gallery, targets[:256])  # warm up BLAS threads
    with Timer(memory=True) as ours:
        stats = rank_statistics(queries, gallery, targets)
    print(f"ours (chunked counts)     {ours}")
    with Timer(memory=True) as base:
        base_ranks = full_sort_ranks(queries, gallery, targets).astype(np.float64)
    print(f"baseline (full argsort)   {base}")
    assert ours.mem is not None
    print(f"speedup {base.wall / ours.wall:.2f}x wall, {base.cpu / ours.cpu:.2f}x CPU (target >= 3x); "
          f"peak extra memory {ours.mem.extra / GB:.3f} GB (target <= 1 GB)")  # fmt: skip
    untied = stats.tied_other == 0
    same = bool(np.array_equal(stats.ranks[untied], base_ranks[untied]))
    lo, hi = stats.with_ties("optimistic").ranks, stats.with_ties("pessimistic").ranks
    within = bool(((base_ranks >= lo) & (base_ranks <= hi)).all())
    print(f"identical ranks on the {int(untied.sum()):,} queries without ties: {same}; "
          f"{int((~untied).sum())} queries have exact float32 ties (the sort breaks them arbitrarily; "
          f"inside [optimistic, pessimistic]: {within})")  # fmt: skip
    del base_ranks
    n_check = min(n_q, 5000)
    with Timer() as t64:
        s64 = rank_statistics(queries[:n_check], gallery, targets[:n_check], dtype="float64")
    agree = float(np.mean(s64.ranks == stats.ranks[:n_check]))
    print(f"float64 check path on {n_check:,} queries {t64}: ranks equal to float32 for {100 * agree:.2f}%")
    print("scores: " + ", ".join(f"{k} {v:.2f}" for k, v in stats.summary().items()))
    with Timer() as boot:
        _bootstrap(stats, targets, n_g)
    print(f"1,000 bootstrap resamples over {n_g:,} videos (T2V, {n_q:,} queries) {boot}")
    del queries, gallery, stats
    gc.collect()

    print(
        f"== retrieval: {big_n:,} x {big_n:,}, {big_dim}-d (the full matrix would be {big_n * big_n * 4 / GB:.0f} GB)"
    )
    q, g = unit_rows(rng, big_n, big_dim), unit_rows(rng, big_n, big_dim)
    with Timer(memory=True) as big_t:
        big = rank_statistics(q, g, np.arange(big_n))
    print(
        f"ours {big_t}  ({big_n * big_n / big_t.wall / 1e9:.2f} G scores/s); R@1 {big.summary()['R@1']:.3f}"
    )


def _bootstrap(stats: Any, targets: np.ndarray, n_units: int) -> Any:
    from create_bench.metrics.bootstrap import bootstrap_cis

    return bootstrap_cis({"t2v": lambda w: stats.weighted_summary(w, groups=targets)}, n_units, n_boot=1000)


# ------------------------------------------------------------------------------------------------
# captioning

PHRASES = ["一个", "男人", "女人", "小女孩", "在", "厨房", "里", "认真地", "做饭", "公园", "跑步", "一只", "小狗",
           "和", "猫咪", "玩耍", "视频", "展示", "了", "美丽", "的", "海边", "风景", "旅行", "vlog", "开箱",
           "iPhone15", "评测", "，", "。", "教", "大家", "如何", "制作", "蛋糕", "舞蹈", "教学", "街头", "美食"]  # fmt: skip


def sentences(data: str, n: int, rng: np.random.Generator) -> list[str]:
    path = Path(data)
    pool: list[str] = []
    if (path / "manifest.json").is_file():
        from create_bench.data.shards import open_dataset, read_table

        for split in open_dataset(path).splits:
            table = read_table(path, split, columns=["captions", "titles"]).to_pydict()
            pool += [s for col in ("captions", "titles") for row in table[col] for s in row]
    if len(pool) < 100:
        pool = ["".join(rng.choice(PHRASES, rng.integers(6, 16))) for _ in range(20_000)]
    # recombine halves so that 55,000 sentences are mostly distinct even from a small pool
    idx = rng.integers(0, len(pool), size=(n, 2))
    return [pool[a][: len(pool[a]) // 2 + 1] + pool[b][len(pool[b]) // 2 :] for a, b in idx]


def captioning_benchmark(data: str, n_videos: int, n_refs: int) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    print(f"== captioning: {n_videos:,} videos x {n_refs} references, BLEU-1..4, ROUGE-L, CIDEr")
    rng = np.random.default_rng(0)
    texts = sentences(data, n_videos * (n_refs + 1), rng)
    refs = {f"v{i:05d}": texts[i * n_refs : (i + 1) * n_refs] for i in range(n_videos)}
    preds = {f"v{i:05d}": texts[n_videos * n_refs + i] for i in range(n_videos)}
    tok = get_tokenizer("jieba")
    tok("预热")  # load the dictionary outside the timings

    with Timer() as tok_t:
        res, gts = tokenize_all(preds, refs, tok)
    res_l = {v: [res[v]] for v in gts}

    def coco() -> dict[str, float]:
        b, _ = Bleu(4).compute_score(gts, res_l, verbose=0)
        r, _ = Rouge().compute_score(gts, res_l)
        c, _ = Cider().compute_score(gts, res_l)
        return {"BLEU-4": b[3], "ROUGE-L": r, "CIDEr": c}

    with Timer() as coco_t:
        coco_scores = coco()
    tok.clear_cache()  # ours tokenises from scratch, like a fresh process
    with Timer() as ours:
        stats = caption_statistics(preds, refs, tokenizer=tok)
    scores = stats.scores()
    diff = max(abs(scores[k] - 100 * coco_scores[k]) for k in coco_scores)
    print(f"pycocoevalcap scorers alone (pre-tokenised)  {coco_t}")
    print(f"ours, total (tokenise + scorers + stats)     {ours}  = {ours.wall / coco_t.wall:.2f}x wall, "
          f"{ours.cpu / coco_t.cpu:.2f}x CPU of the scorers alone")  # fmt: skip
    print(
        f"  of which jieba tokenisation                {tok_t}  ({100 * tok_t.cpu / ours.cpu:.0f}% of our CPU)"
    )
    print(f"max |ours - pycocoevalcap| over BLEU-4/ROUGE-L/CIDEr (x100): {diff:.2e}")
    other = dict(zip(preds, list(preds.values())[1:] + list(preds.values())[:1]))
    with Timer() as again:
        caption_statistics(other, refs, tokenizer=tok)
    print(
        f"another system on the same references (tokens cached) {again}  = {again.cpu / coco_t.cpu:.2f}x CPU"
    )
    with Timer() as boot:
        _caption_bootstrap(stats)
    print(f"1,000 bootstrap resamples from the kept statistics {boot} "
          f"(re-scoring 1,000 times would take ~{1000 * coco_t.cpu / 3600:.1f} CPU hours)")  # fmt: skip


def _caption_bootstrap(stats: Any) -> Any:
    from create_bench.metrics.bootstrap import bootstrap_cis

    return bootstrap_cis({"caption": stats.weighted_scores}, len(stats), n_boot=1000)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--big-dim", type=int, default=64, help="embedding size of the 100,000 x 100,000 run")
    p.add_argument("--skip", choices=("retrieval", "captioning"), action="append", default=[])
    args = p.parse_args()
    if args.quick:
        sizes = {"n_q": 5_000, "n_g": 500, "dim": 512, "big_n": 20_000, "big_dim": args.big_dim}
        cap = {"n_videos": 500, "n_refs": 10}
    else:
        sizes = {"n_q": 50_000, "n_g": 5_000, "dim": 512, "big_n": 100_000, "big_dim": args.big_dim}
        cap = {"n_videos": 5_000, "n_refs": 10}
    if "retrieval" not in args.skip:
        retrieval_benchmark(**sizes)
    if "captioning" not in args.skip:
        captioning_benchmark(args.data, **cap)


if __name__ == "__main__":
    main()
