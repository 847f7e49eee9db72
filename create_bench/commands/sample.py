"""``create-bench sample``: generate CREATE-sample, the embedded default dataset."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Generate CREATE-sample: a synthetic dataset in exactly the shape of CREATE-210K (real H.264
videos, Chinese titles/captions/raw titles/tags in CREATE's style, shards + README + manifest).

Sizes: --videos N is the number of TRAIN videos; the other splits scale with it:
validation = max(8, N/10), test = max(12, N/5), pretrain = max(8, 3N/10). The default N=1000
gives 1000 train / 100 validation / 200 test (1 title + 1 caption per train video, 10 + 10 per
validation/test video) and a 300-video 'pretrain' config (raw_title + tags only). --sizes sets
every split explicitly instead. The same --seed gives byte-identical shards (for one version
of create-bench and PyAV), whatever --workers is.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="generate CREATE-sample (synthetic CREATE-shaped dataset)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output dataset directory (replaced atomically)")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--videos",
        type=int,
        metavar="N",
        help="number of train videos; validation/test/pretrain scale with it (default 1000)",
    )
    size.add_argument(
        "--sizes",
        metavar="SPEC",
        help="explicit split sizes, e.g. train=24,validation=8,test=12,pretrain=8 (missing = 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes (default 2)")
    p.add_argument(
        "--video-storage",
        choices=["embed", "path"],
        default="embed",
        help="embed MP4 bytes in the shards (default) or write videos/<vid>.mp4 and store paths",
    )
    p.add_argument("--shard-size", type=int, default=250, help="rows per shard (default 250)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from create_bench.synthetic.sample import SAMPLE_VERSION, generate_sample, parse_sizes, resolve_sizes

    sizes = parse_sizes(args.sizes) if args.sizes else resolve_sizes(args.videos)
    t0 = time.perf_counter()
    out = generate_sample(
        args.out,
        sizes=sizes,
        seed=args.seed,
        workers=args.workers,
        video_storage=args.video_storage,
        shard_size=args.shard_size,
    )
    elapsed = time.perf_counter() - t0
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    counts = ", ".join(f"{k} {v}" for k, v in manifest["splits"].items())
    print(
        f"create-sample {SAMPLE_VERSION} seed {args.seed}: {sum(manifest['splits'].values())} videos "
        f"({counts}) in {elapsed:.1f} s with {args.workers} worker(s)"
    )
    print(f"{len(manifest['files'])} files, {total / 1e6:.1f} MB, fingerprint {manifest['fingerprint']}")
    print(f"wrote {out}")
    return 0
