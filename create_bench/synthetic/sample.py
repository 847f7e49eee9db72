"""CREATE-sample (layer 2): a generated dataset in exactly the shape of CREATE-210K.

Every video is planned from its own seed, ``SeedSequence(seed, spawn_key=(split, index))``:
latent attributes, vid, texts and the render seed. So the data depend only on (seed, split,
index, SAMPLE_VERSION): not on the number of worker processes, and a smaller sample is a
prefix of a bigger one with the same seed. Videos are rendered and probed in a process pool
(``imap`` keeps the order) and every row goes through :class:`DatasetWriter`, so the sample has
the same layout, manifest and validation as an imported release.

Sizes: ``videos=N`` means N train videos, with validation = max(8, N/10), test = max(12, N/5)
and pretrain = max(8, 3N/10) (the default N=1000 gives 1000/100/200/300). ``sizes=`` gives the
four counts explicitly. Train rows have 1 title + 1 caption, validation/test rows 10 + 10
(paraphrases), pretrain rows only ``raw_title`` + ``tags`` + video (category -1).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from create_bench.errors import ConfigError
from create_bench.progress import track
from create_bench.synthetic.annotators import simulate_video_omega
from create_bench.synthetic.text import (
    CATEGORIES,
    CATEGORY_NAMES,
    COLOUR_BY_KEY,
    Annotation,
    Latent,
    annotate,
    draw_latent,
    make_vid,
)
from create_bench.synthetic.video import VideoSpec, render_video

log = logging.getLogger(__name__)

#: Version of the generator's output; bump on any change to tables, templates, rendering or
#: encoder options (anything that changes the bytes for a given seed).
SAMPLE_VERSION = "1.2.0"  # 1.2.0: title_omega (simulated annotators)
SAMPLE_NAME = "create-sample"

SPLITS = ("train", "validation", "test", "pretrain")
DEFAULT_SIZES = {"train": 1000, "validation": 100, "test": 200, "pretrain": 300}
#: Titles and captions per video, as in CREATE-210K (pre-training rows have none).
REFS_PER_SPLIT = {"train": 1, "validation": 10, "test": 10, "pretrain": 0}
_SPLIT_KEY = {s: i for i, s in enumerate(SPLITS)}
DEFAULT_SHARD_SIZE = 250

# Display sizes (width, height): landscape and portrait, all small. Odd sizes go in as yuv444p.
# No display width of 16, 24, 48 or 72: decord 0.6.0 returns 4-channel garbage for those and
# fails in get_batch ("DECORDArrayCopyFromTo: The size must exactly match", dmlc/decord#336).
EVEN_SIZES = (
    (128, 72), (160, 90), (128, 96), (96, 64), (160, 120), (112, 64), (64, 64), (96, 96),
    (144, 96), (80, 144), (90, 160), (96, 128), (64, 112), (120, 160),
)  # fmt: skip
DECORD_BAD_WIDTHS = frozenset({16, 24, 48, 72})
ODD_SIZES = ((97, 71), (71, 97), (113, 65), (81, 145), (125, 93))
FPS_CHOICES = (Fraction(10), Fraction(12), Fraction(15), Fraction(20), Fraction(24), Fraction(25),
               Fraction(24000, 1001))  # fmt: skip
# Which videos get an odd size / a rotation: fixed by index (about 6% and 8% of each split) so
# that even a tiny sample has both, and the choice does not depend on the seed.
_ODD_EVERY, _ODD_AT = 17, 3
_ROT_EVERY, _ROT_AT = 13, 7


@dataclass(frozen=True)
class VideoPlan:
    """One video of the sample, fully decided before rendering."""

    split: str
    index: int
    vid: str
    latent: Latent
    annotation: Annotation
    spec: VideoSpec


def resolve_sizes(videos: int | Mapping[str, int] | None = None) -> dict[str, int]:
    """Split sizes from ``--videos``: None (defaults), N train videos (others scaled), or a mapping."""
    if videos is None:
        return dict(DEFAULT_SIZES)
    if isinstance(videos, Mapping):
        unknown = sorted(set(videos) - set(SPLITS))
        if unknown:
            raise ConfigError(f"unknown split(s) {unknown} in sample sizes (known: {', '.join(SPLITS)})")
        sizes = {s: videos.get(s, 0) for s in SPLITS}
    else:
        if isinstance(videos, bool) or not isinstance(videos, int) or videos < 1:
            raise ConfigError(f"--videos must be a positive number of train videos, got {videos!r}")
        n = videos
        sizes = {
            "train": n,
            "validation": max(8, round(n / 10)),
            "test": max(12, round(n / 5)),
            "pretrain": max(8, round(3 * n / 10)),
        }
    for split, count in sizes.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"size of split {split!r} must be an int >= 0, got {count!r}")
    if sum(sizes.values()) == 0:
        raise ConfigError("the sample would be empty: every split size is 0")
    return sizes


def parse_sizes(text: str) -> dict[str, int]:
    """``"train=24,validation=8,test=12,pretrain=8"`` -> dict (for the CLI)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"bad split size {part.strip()!r}; expected SPLIT=N, e.g. train=24")
        out[name.strip()] = int(value)
    return resolve_sizes(out)


def plan_video(seed: int, split: str, index: int) -> VideoPlan:
    """Decide everything about video ``index`` of ``split``: a pure function of its arguments."""
    ss = np.random.SeedSequence(seed, spawn_key=(_SPLIT_KEY[split], index))
    text_ss, video_ss = ss.spawn(2)
    rng = np.random.default_rng(text_ss)
    vid = make_vid(rng)
    latent = draw_latent(rng)
    ann = annotate(rng, latent, REFS_PER_SPLIT[split])
    vrng = np.random.default_rng(video_ss)
    if index % _ODD_EVERY == _ODD_AT:
        width, height = ODD_SIZES[int(vrng.integers(len(ODD_SIZES)))]
    else:
        width, height = EVEN_SIZES[int(vrng.integers(len(EVEN_SIZES)))]
    rotation = int(vrng.choice([90, 180, 270])) if index % _ROT_EVERY == _ROT_AT else 0
    fps = FPS_CHOICES[int(vrng.integers(len(FPS_CHOICES)))]
    duration = float(vrng.uniform(2.0, 5.0))
    cat = CATEGORIES[latent.category]
    spec = VideoSpec(
        width=width,
        height=height,
        fps=fps,
        num_frames=max(2, round(duration * float(fps))),
        rotation=rotation,
        pattern=cat.pattern,
        palette=cat.palette,
        shape=latent.object.shape,
        colour=COLOUR_BY_KEY[latent.colour].rgb,
        motion=latent.motion,
        count=latent.count,
        speed=latent.speed,
        seed=int(video_ss.generate_state(1)[0]),
    )
    return VideoPlan(split, index, vid, latent, ann, spec)


def plan_sample(seed: int, sizes: Mapping[str, int]) -> list[VideoPlan]:
    """Plans of every video, in output order (split by split); vids unique across splits."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an int >= 0, got {seed!r}")
    plans: list[VideoPlan] = []
    seen: set[str] = set()
    for split in SPLITS:
        for i in range(sizes.get(split, 0)):
            plan = plan_video(seed, split, i)
            if plan.vid in seen:  # ~1e-16 per pair; re-draw deterministically from the vid itself
                rng = np.random.default_rng([seed, _SPLIT_KEY[split], i, *map(ord, plan.vid)])
                while (vid := make_vid(rng)) in seen:
                    pass
                plan = VideoPlan(plan.split, plan.index, vid, plan.latent, plan.annotation, plan.spec)
            seen.add(plan.vid)
            plans.append(plan)
    return plans


def _render_and_probe(job: tuple[str, VideoSpec]) -> tuple[bytes, dict[str, Any]]:
    from create_bench.video.probe import probe_video

    vid, spec = job
    data = render_video(spec)
    return data, probe_video(data, vid=vid).to_dict()


def _render_all(plans: list[VideoPlan], workers: int) -> Iterator[tuple[bytes, dict[str, Any]]]:
    jobs = [(p.vid, p.spec) for p in plans]
    if workers <= 1 or len(jobs) < 8:
        yield from map(_render_and_probe, jobs)
        return
    # spawn, not fork: the parent may hold threads (torch, decord, pytest plugins), and a forked
    # child inheriting their locks can hang. The workers only need numpy and PyAV.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=workers) as pool:
        yield from pool.imap(_render_and_probe, jobs, chunksize=8)


def _row(plan: VideoPlan, video: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    pretrain = plan.split == "pretrain"
    return {
        "vid": plan.vid,
        "split": plan.split,
        "category": -1 if pretrain else plan.latent.category,
        "tags": plan.annotation.tags,
        "raw_title": plan.annotation.raw_title,
        "titles": plan.annotation.titles,
        "captions": plan.annotation.captions,
        "video": video,
        # attractiveness of each title's characters from 10 simulated annotators (synthetic/annotators.py)
        "title_omega": simulate_video_omega(plan.vid, plan.annotation.titles)
        if plan.annotation.titles
        else None,
        **info,
    }


def _generator_info(seed: int, sizes: dict[str, int], video_storage: str) -> dict[str, Any]:
    import av

    libavcodec = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    return {
        "name": SAMPLE_NAME,
        "version": SAMPLE_VERSION,
        "seed": seed,
        "videos": dict(sizes),
        "video_storage": video_storage,
        "encoder": f"libx264 via PyAV {av.__version__} (libavcodec {libavcodec})",
    }


README_BODY = """\
# CREATE-sample

A generated stand-in for CREATE-210K (Chinese short-video retrieval and title/caption generation),
in exactly the release's shape, so that every part of create-bench runs end to end without it.
It is synthetic: do not report numbers on it as CREATE results.

Each video is a small real H.264 MP4 (2-5 s, 10-25 fps, 64-160 px; a few with odd sizes or a
rotation matrix) showing a scene (the category's background) with one to three objects of one
shape and colour moving left/right/up/down, rotating, bouncing or growing, slowly or fast. The
Chinese texts are generated from the same attributes: captions name the scene, colour, object and
motion; titles are catchy and name the object; raw titles are noisy uploader text; tags are free
words. Train videos have 1 title and 1 caption, validation and test 10 of each; the `pretrain`
config has only raw titles and tags. Regenerate with `create-bench sample --out DIR --seed S`.
"""


def generate_sample(
    out_dir: str | os.PathLike[str],
    *,
    videos: int | Mapping[str, int] | None = None,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    workers: int = 2,
    video_storage: Literal["embed", "path"] = "embed",
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> Path:
    """Generate CREATE-sample into ``out_dir`` (replaced atomically) and return its path.

    Args:
        videos: None for the default sizes (1000/100/200/300), N train videos (validation,
            test and pretrain scaled: max(8, N/10), max(12, N/5), max(8, 3N/10)), or a mapping
            split -> count.
        sizes: explicit split -> count mapping (same as passing a mapping as ``videos``).
        seed: any int >= 0; the same seed and SAMPLE_VERSION give byte-identical shards.
        workers: processes rendering and probing videos; the output does not depend on it.
        video_storage: ``embed`` puts the MP4 bytes in the shards; ``path`` writes
            ``videos/<vid>.mp4`` next to them and stores the relative path.
        shard_size: rows per Parquet shard.
    """
    from create_bench.data.build import DatasetWriter

    if sizes is not None and videos is not None:
        raise ConfigError("give either videos= or sizes=, not both")
    split_sizes = resolve_sizes(sizes if sizes is not None else videos)
    if video_storage not in ("embed", "path"):
        raise ConfigError(f"video_storage must be 'embed' or 'path', got {video_storage!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an int >= 1, got {workers!r}")
    out = Path(out_dir)
    t0 = time.perf_counter()
    plans = plan_sample(seed, split_sizes)
    # With path storage the MP4s go into the writer's staging directory (DatasetWriter.add_file),
    # so they appear together with the shards, listed and hashed in the manifest.
    with DatasetWriter(
        out,
        name=SAMPLE_NAME,
        categories=list(CATEGORY_NAMES),
        shard_size=shard_size,
        generator=_generator_info(seed, split_sizes, video_storage),
        readme_body=README_BODY,
    ) as writer:
        rendered = zip(plans, _render_all(plans, workers))
        for plan, (data, info) in track(rendered, desc="sample: rendered", total=len(plans), unit="videos"):
            video: dict[str, Any]
            if video_storage == "embed":
                video = {"bytes": data, "path": f"{plan.vid}.mp4"}
            else:
                writer.add_file(f"videos/{plan.vid}.mp4", data)
                video = {"bytes": None, "path": f"videos/{plan.vid}.mp4"}
            writer.add(_row(plan, video, info), index=plan.index)
    log.info("sample: %d videos in %.1f s -> %s", len(plans), time.perf_counter() - t0, out)
    return out
