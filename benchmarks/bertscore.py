"""BERTScore/ACTEr-r speed: a BERT of bert-base-chinese's shape (12 blocks, width 768, 12 heads, FFN
3072; :data:`create_bench.synthetic.random_bert.BASE`) built from its config (random weights, nothing
downloaded), cut at layer 8 as for bert-base-chinese, scoring N titles x 10 references.

Prints titles/s with the references encoded in the run (cold: the first system scored on a split)
and with the reference embeddings reused (warm: every further system on the same split), and the
gain. Titles and references come from --data's test split, repeated to reach --titles (default
5,000; --scale multiplies it, --quick = 0.01).

    python benchmarks/bertscore.py --data /tmp/s --scale 0.02
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ensure_data, parser  # noqa: E402


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--titles", type=int, default=5000)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from create_bench.data.shards import read_table
    from create_bench.features.text_metrics import (
        TextMetricOptions,
        clear_reference_cache,
        embedding_statistics,
    )
    from create_bench.synthetic.random_bert import BASE, random_bert

    data = ensure_data(args.data)
    n = max(1, int(args.titles * (0.01 if args.quick else args.scale)))
    rows = read_table(data, "test", columns=["vid", "titles", "title_omega"]).to_pylist()
    pick = [rows[i % len(rows)] for i in range(n)]
    refs = [
        [t + f"{i % 97}" for t in r["titles"]] for i, r in enumerate(pick)
    ]  # distinct references per title
    cands = [r["titles"][0][::-1] + f"{i}" for i, r in enumerate(pick)]  # distinct: no dedup gain
    vids = [f"{r['vid']}#{i}" for i, r in enumerate(pick)]
    with tempfile.TemporaryDirectory() as tmp:
        enc_dir = random_bert(Path(tmp) / "bert", BASE, seed=0)
        opts = TextMetricOptions(str(enc_dir), layer=8, device=args.device, batch_size=64)
        clear_reference_cache()
        t0 = time.perf_counter()
        embedding_statistics(opts, vids, cands, refs)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        embedding_statistics(opts, vids, [c + "!" for c in cands], refs)
        warm = time.perf_counter() - t0
    nref = sum(len(r) for r in refs)
    print(
        f"BERTScore/ACTEr-r, BERT 12x768 cut at layer 8, {args.device}, {n} titles x {nref / n:.0f} references"
    )
    print(f"cold (references encoded):  {n / cold:8.1f} titles/s  ({cold:.1f} s)")
    print(f"warm (references reused):   {n / warm:8.1f} titles/s  ({warm:.1f} s)")
    print(f"gain from reusing reference embeddings: {cold / warm:.1f}x")
    print(
        f"projected for 5,000 titles x 10 references: cold {5000 * cold / n / 60:.1f} min, warm {5000 * warm / n / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
