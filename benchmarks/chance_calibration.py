"""Are the retrieval intervals calibrated? The ``random`` baseline over many seeds, against chance.

For each seed the ``random`` model's embeddings of the split's videos and texts are scored by the
scoring code itself (``create_bench.scoring``: ranks, 1,000 video resamples, intervals, chance
check; no harness, no generation). Its expected score is the chance level
(``create_bench.metrics.chance``), so a calibrated 95% interval contains it in about 95% of the
seeds. Printed per retrieval number: the chance level, the mean score over seeds, the coverage of
the intervals the scorer reports and of plain percentile intervals from the same resamples (what
the scorer used before); then the misses per seed, and how often the family-wise chance check
(Holm over all the numbers, 5%) calls a seed "not consistent with chance" (should be <= 5%).

    python benchmarks/chance_calibration.py --data data/create-sample              # 60 seeds
    python benchmarks/chance_calibration.py --data data/create-sample --seeds 400  # 4-9 min

A coverage estimate from S seeds has a standard error of about sqrt(0.95 x 0.05 / S) (2.8 points
for S = 60, 1.1 for S = 400). The load average is printed: the run is CPU-bound (about 0.6 s per
seed on an idle core, half of it the random model's own hashing).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ensure_data, parser  # noqa: E402

from create_bench.metrics.bootstrap import percentile_interval  # noqa: E402
from create_bench.models.baselines import RandomModel  # noqa: E402
from create_bench.predictions import Predictions  # noqa: E402
from create_bench.scoring import CI_LEVEL, _score_groups, load_references, uncertainty  # noqa: E402
from create_bench.types import TEXT_KINDS, text_id  # noqa: E402


def random_predictions(refs: object, seed: int) -> Predictions:
    """The ``random`` baseline's embeddings of every video and text of the split (what ``eval`` stores)."""
    model = RandomModel(seed=seed)
    ids, texts = [], []
    for kind in TEXT_KINDS:
        for vid, ts in zip(refs.vids, refs.texts[kind]):  # type: ignore[attr-defined]
            for k, t in enumerate(ts):
                ids.append(text_id(vid, kind, k))
                texts.append(t)
    return Predictions(
        video_ids=list(refs.vids),  # type: ignore[attr-defined]
        video_embeddings=model.encode_videos({"vid": list(refs.vids)}),  # type: ignore[attr-defined]
        text_ids=ids,
        text_embeddings=model.encode_texts(texts),
        model_card={"name": "random"},
    )


def one_seed(refs: object, split: str, seed: int, n_boot: int) -> dict[str, object]:
    """Scores, reported intervals, percentile intervals, chance levels and the chance check of one seed."""
    preds = random_predictions(refs, seed)
    groups = _score_groups(preds, refs, refs, split, tokenizer="jieba", meteor=False, ties="expected")  # type: ignore[arg-type]
    unc = uncertainty(groups, len(refs.vids), bootstrap=n_boot, seed=seed)  # type: ignore[attr-defined]
    percentile = {
        g: {m: percentile_interval(v, CI_LEVEL) for m, v in unc.samples[g].items()} for g in unc.chance
    }
    return {
        "scores": {g: groups[g].scores for g in unc.chance},
        "ci": unc.ci,
        "percentile": percentile,
        "chance": unc.chance,
        "test": unc.chance_test,
    }


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=60, help="random-baseline seeds 0..S-1 (default 60)")
    p.add_argument("--bootstrap", type=int, default=1000, help="video resamples per seed (default 1000)")
    p.add_argument("--split", default="test")
    args = p.parse_args()
    seeds = 10 if args.quick else args.seeds
    data = ensure_data(args.data)
    refs = load_references(data, args.split)
    print(
        f"chance calibration: {data} {args.split} ({len(refs.vids)} videos), random baseline seeds "
        f"0..{seeds - 1}, {args.bootstrap} video resamples each; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    t0 = time.perf_counter()
    runs = [one_seed(refs, args.split, s, args.bootstrap) for s in range(seeds)]
    elapsed = time.perf_counter() - t0
    chance = runs[0]["chance"]
    keys = [(g, m) for g in chance for m in chance[g]]  # type: ignore[attr-defined]

    def inside(run: dict, which: str, g: str, m: str) -> bool:
        lo, hi = run[which][g][m]
        return bool(lo <= run["chance"][g][m] <= hi)

    print(f"\n{'group':12s} {'metric':6s} {'chance':>9s} {'mean':>9s}  {'coverage':>8s}  {'percentile':>10s}")
    for g, m in keys:
        mean = np.mean([r["scores"][g][m] for r in runs])
        cov = np.mean([inside(r, "ci", g, m) for r in runs])
        perc = np.mean([inside(r, "percentile", g, m) for r in runs])
        print(f"{g:12s} {m:6s} {chance[g][m]:9.3f} {mean:9.3f}  {cov:8.1%}  {perc:10.1%}")
    for which, label in (("ci", "reported intervals"), ("percentile", "percentile intervals")):
        misses = [sum(not inside(r, which, g, m) for g, m in keys) for r in runs]
        cov = 1 - np.mean(misses) / len(keys)
        print(
            f"\n{label}: overall coverage {cov:.1%} ({len(keys)} numbers x {seeds} seeds; expect 95%); "
            f"misses per seed: mean {np.mean(misses):.2f} (expect {0.05 * len(keys):.1f}), "
            f"seeds 0-{min(seeds, 10) - 1}: {misses[:10]}"
        )
    flagged = [s for s, r in enumerate(runs) if not r["test"]["consistent"]]
    print(
        f"\nfamily-wise chance check (Holm, alpha 0.05, {len(keys)} numbers): {len(flagged)} of {seeds} seeds "
        f"flagged as not consistent with chance ({len(flagged) / seeds:.1%}; should be <= 5%)"
        + (f": seeds {flagged}" if flagged else "")
    )
    print(f"seed 0: {runs[0]['test']['statement']}")
    print(f"\n{elapsed:.1f} s ({elapsed / seeds:.2f} s per seed)")


if __name__ == "__main__":
    main()
