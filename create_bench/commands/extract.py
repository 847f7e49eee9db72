"""``create-bench extract``: per-frame features of a split with a frozen encoder (local, Ray or torchrun)."""

from __future__ import annotations

import argparse


def _size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    try:
        return (int(h), int(w)) if sep else (int(h), int(h))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW or N, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="extract per-frame features of a split with a frozen encoder (engines: local, ray, torchrun)",
        description=(
            "Decode each video's frames with a frame policy, run a frozen encoder, and write "
            "DIR/features/<set>/{split}-NNNNN-of-NNNNN.parquet (listed in the dataset manifest). "
            "Resumable: re-running skips videos already done. Under torchrun every rank works on "
            "its share and rank 0 merges: torchrun --nproc-per-node=M -m create_bench extract --engine torchrun ..."
        ),
    )
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument("--split", required=True, help="split to extract, e.g. test or pretrain-3m")
    p.add_argument(
        "--engine",
        choices=("local", "ray", "torchrun"),
        default="local",
        help="where the work runs (default: %(default)s)",
    )
    p.add_argument(
        "--encoder", default="fixed", help="fixed | clip:DIR | a CLIP checkpoint dir | file.py:Class"
    )
    p.add_argument("--frames", default="uniform-center@8", help="frame policy (default uniform-center@8)")
    p.add_argument("--frame-size", type=_size, default=None, help="resize frames at decode time, HxW or N")
    p.add_argument("--feature-set", default=None, help="name under features/ (default <encoder>-<policy>)")
    p.add_argument(
        "--out",
        default=None,
        help="root for features/<set>/ (default: the dataset, whose manifest lists them)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="videos per part file / encoder batch")
    p.add_argument(
        "--num-workers", type=int, default=0, help="decode processes (DataLoader workers / Ray tasks)"
    )
    p.add_argument(
        "--decode-device", default="cpu", help="cpu | cuda[:N] (NVDEC: decord with CUDA or PyNvVideoCodec)"
    )
    p.add_argument("--device", default="cpu", help="encoder device: cpu | cuda[:N]")
    p.add_argument(
        "--encoder-threads",
        type=int,
        default=None,
        help="torch threads of the encoder (default: CPUs - workers)",
    )
    p.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="an undecodable video: fail stops; skip leaves it out and reports it (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="per-video decode timeout, seconds")
    p.add_argument("--no-resume", action="store_true", help="redo videos already extracted")
    p.add_argument(
        "--encode-batch", type=int, default=1, help="videos per encoder call (1 = exact across engines)"
    )
    g = p.add_argument_group("ray")
    g.add_argument(
        "--ray-address", default=None, help="an existing Ray cluster (default: RAY_ADDRESS or a local one)"
    )
    g.add_argument("--num-encoders", type=int, default=1, help="encoder actors")
    g.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per encoder actor")
    g.add_argument("--object-store-mb", type=int, default=None, help="object store of a local Ray instance")
    g = p.add_argument_group("torchrun")
    g.add_argument("--rank", type=int, default=None, help="default: $RANK")
    g.add_argument("--world-size", type=int, default=None, help="default: $WORLD_SIZE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from create_bench.errors import BackendUnavailable
    from create_bench.features.extract import make_config, run_extraction

    if args.engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BackendUnavailable("--engine ray needs Ray: pip install 'create-bench[ray]'") from None
    cfg = make_config(
        args.data,
        args.split,
        engine=args.engine,
        encoder=args.encoder,
        frames=args.frames,
        frame_size=args.frame_size,
        feature_set=args.feature_set,
        out_dir=args.out,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        decode_device=args.decode_device,
        device=args.device,
        encoder_threads=args.encoder_threads,
        on_error=args.on_error,
        timeout=args.timeout,
        resume=not args.no_resume,
        encode_batch=args.encode_batch,
        ray_address=args.ray_address,
        num_encoders=args.num_encoders,
        num_gpus=args.num_gpus,
        object_store_mb=args.object_store_mb,
        rank=args.rank,
        world_size=args.world_size,
    )
    report = run_extraction(cfg)
    where = (
        f"{report.feature_dir} ({len(report.files)} files)"
        if report.merged
        else "parts written; rank 0 merges"
    )
    print(
        f"extract {report.feature_set}/{report.split} [{report.engine}]: {report.num_videos} videos, "
        f"{report.reused} already done, {len(report.computed)} computed here, {len(report.failed)} failed, "
        f"{report.seconds:.1f} s -> {where}"
    )
    for vid, msg in sorted(report.failed.items())[:20]:
        print(f"  failed {vid}: {msg}")
    return 0
