"""ALWIG training throughput (clips/s): cached per-frame features vs raw frames, same model and batches.

- **features**: what ``create-bench train alwig`` does after its one-time feature pass: every step
  reads frozen-encoder features from memory (the baseline here is the raw-frames path).
- **raw frames**: every step decodes its clips with the loader (frame policy and size of the
  config), runs the frozen encoder and then the same training step.

Both use the CREATE-sample config (``--config`` for another), the same global batches of the
train split, and one process. The ratio is features / raw frames (how much the cache buys).

    python benchmarks/train_alwig.py --data data/create-sample [--quick]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import ensure_data, parser, ratio_line  # noqa: E402

from create_bench.data.shards import read_table  # noqa: E402
from create_bench.loader import make_loader  # noqa: E402
from create_bench.models.alwig.bundle import ALWIG, frame_features  # noqa: E402
from create_bench.models.alwig.config import config_for_dataset  # noqa: E402
from create_bench.training.alwig.batches import make_batch, text_choices  # noqa: E402
from create_bench.training.alwig.features import SplitData  # noqa: E402
from create_bench.training.alwig.optim import make_optimizer  # noqa: E402


def step(bundle: ALWIG, opt: torch.optim.Optimizer, data: SplitData, rows: list[int], salt: int) -> None:
    batch = make_batch(bundle, data, rows, text_choices(data, rows, bundle.cfg, "finetune", salt))
    loss = bundle.net(batch)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--config", default=None, help="ALWIG config (default: the dataset's; sample.yaml for CREATE-sample)"
    )
    p.add_argument("--steps", type=int, default=None, help="timed steps per path (default 8, --quick 2)")
    args = p.parse_args()
    data_dir = ensure_data(args.data)
    cfg = config_for_dataset(data_dir, args.config)
    steps = args.steps or (2 if args.quick else 8)
    if args.quick:
        cfg = cfg.replace(batch_size=16)
    torch.manual_seed(0)

    table = read_table(data_dir, "train", columns=["vid", "tags", "titles", "captions", "raw_title"])
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    bundle = ALWIG.create(cfg, [t for r in cols["titles"] + cols["captions"] for t in r], cols["tags"])
    bundle.net.train()
    opt = make_optimizer(bundle.net, cfg)
    row_of = {v: i for i, v in enumerate(cols["vid"])}
    print(
        f"dataset {data_dir} split train; config {args.config or 'sample'}: encoder {cfg.encoder}, "
        f"{cfg.frames} at {cfg.frame_size}, batch {cfg.batch_size}, "
        f"{sum(p.numel() for p in bundle.net.parameters()) / 1e6:.2f}M parameters; {steps} timed steps, "
        f"{torch.get_num_threads()} threads"
    )

    # Raw frames: loader -> frozen encoder -> step, timed end to end (after one warm-up batch).
    loader = make_loader(
        data_dir,
        "train",
        frames=cfg.frames,
        size=cfg.frame_size,
        batch_size=cfg.batch_size,
        rank=0,
        world_size=1,
        on_error="fail",
        columns=("width", "height", "rotation"),
    )
    feats, masks, order = [], [], []
    t_decode = t_encode = t_step = 0.0
    clips = 0
    it = iter(loader)
    for i in range(steps + 1):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        f, m = frame_features(bundle.encoder, cfg, batch)
        t2 = time.perf_counter()
        rows = [row_of[str(v)] for v in batch["vid"]]
        split = SplitData(
            "train",
            [cols["vid"][r] for r in rows],
            f,
            m,
            [cols["tags"][r] for r in rows],
            [cols["titles"][r] for r in rows],
            [cols["captions"][r] for r in rows],
            [cols["raw_title"][r] for r in rows],
        )
        step(bundle, opt, split, list(range(len(rows))), i)
        t3 = time.perf_counter()
        feats.append(f)
        masks.append(m)
        order += rows
        if i == 0:
            continue  # warm-up
        t_decode += t1 - t0
        t_encode += t2 - t1
        t_step += t3 - t2
        clips += len(rows)
    raw_rate = clips / (t_decode + t_encode + t_step)

    # Features: the same clips from memory.
    cached = SplitData(
        "train",
        [cols["vid"][r] for r in order],
        torch.cat(feats),
        torch.cat(masks),
        [cols["tags"][r] for r in order],
        [cols["titles"][r] for r in order],
        [cols["captions"][r] for r in order],
        [cols["raw_title"][r] for r in order],
    )
    bs = cfg.batch_size
    batches = [list(range(i, min(i + bs, len(order)))) for i in range(0, len(order), bs)]
    step(bundle, opt, cached, batches[0], 0)  # warm-up
    t0 = time.perf_counter()
    n = 0
    for i, rows in enumerate(batches[1 : steps + 1]):
        step(bundle, opt, cached, rows, i + 1)
        n += len(rows)
    feat_rate = n / (time.perf_counter() - t0)

    print(f"raw frames: decode {clips / t_decode:8.1f} clips/s, encoder {clips / t_encode:8.1f} clips/s, "
          f"step {clips / t_step:8.1f} clips/s")  # fmt: skip
    print(ratio_line("train clips/s, features vs raw frames", feat_rate, raw_rate, "clips/s"))


if __name__ == "__main__":
    main()
