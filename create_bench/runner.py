"""The evaluation harness (layer 4): the only place where models and tasks meet.

``evaluate(model, EvalConfig(...))`` builds the input the model asks for (decoded frames with the
frame policy and size of its metadata, precomputed features, or metadata only), calls its protocol
methods with progress bars, checks every output at this boundary (shapes, dtype, NaN/inf,
missing/extra vids, non-string or empty generations raise :class:`ModelError` naming the model and
the problem), writes the predictions directory of ARCHITECTURE.md, scores it with
:func:`create_bench.scoring.score_predictions` (the code behind ``create-bench score``) and writes
the results JSON and the report atomically.

Re-running with the same model, model options, model code, data fingerprint, split, tasks and frame
policy reuses the predictions directory instead of running the model again, unless ``no_cache``.

The run's configuration lives in :mod:`create_bench.runner_config`, the output checks in
:mod:`create_bench.runner_checks`, output paths, the prediction cache and the ownership check in
:mod:`create_bench.runner_cache`; their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import BackendUnavailable, ConfigError, DataError, ModelError
from create_bench.fsutil import atomic_write_json
from create_bench.metrics.retrieval import l2_normalise
from create_bench.models import model_tasks
from create_bench.models.base import ModelContext, ModelMeta
from create_bench.progress import Progress, track
from create_bench.runner_cache import (
    CACHE_VERSION,
    _cache_file,
    _cache_hit,
    _check_owner,
    _key_hash,
    _model_class,
    _refresh_card,
    cache_key,
    check_results_file,
    output_paths,
)
from create_bench.runner_checks import _few, check_embeddings, check_generations
from create_bench.runner_config import DEFAULT_RESULTS_DIR, EvalConfig, EvalOutcome
from create_bench.tasks import TASKS, TaskSpec, parse_tasks
from create_bench.types import TEXT_COLUMN, TEXT_KINDS, id_differences, text_id

log = logging.getLogger(__name__)


@dataclass
class _Outputs:
    """Model outputs gathered in memory before anything is written."""

    video_ids: list[str] = field(default_factory=list)
    video_embeddings: list[np.ndarray] = field(default_factory=list)
    generations: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> vid -> text
    text_ids: list[str] = field(default_factory=list)
    text_embeddings: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------
# Running the model


def _video_batches(model: Any, cfg: EvalConfig, frames: str) -> Iterator[dict[str, Any]]:
    """Batches of the model protocol, with exactly the input the model declares."""
    meta: ModelMeta = model.meta
    if meta.inputs == "none":
        from create_bench.data.shards import iter_batches

        cols = ["vid", "tags", "raw_title", "category", *meta.columns]
        for rb in iter_batches(
            cfg.data_dir, cfg.split, cols, batch_size=cfg.batch_size, rank=0, world_size=1
        ):
            yield {c: rb.column(c).to_pylist() for c in cols}
        return
    from create_bench.loader import DEFAULT_COLUMNS, make_loader

    # Only the extra columns the model declares (e.g. display geometry, to undo a resize).
    kw: dict[str, Any] = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "on_error": "fail",
        "columns": tuple(dict.fromkeys((*DEFAULT_COLUMNS, *meta.columns))),
    }
    if meta.inputs == "features":
        kw["features"] = meta.feature_set
    else:
        kw["frames"] = frames
        if meta.frame_size is not None:
            kw["size"] = tuple(meta.frame_size)
        else:
            kw["size"] = None  # the stored size, not the loader's default
            if cfg.batch_size > 1:
                # Stored sizes differ between videos and cannot share a batch: one video per call.
                log.info("model %r asks for frames at their stored size: batches of one video", meta.name)
                kw["batch_size"] = 1
    yield from make_loader(cfg.data_dir, cfg.split, **kw)


def _batch_vids(batch: dict[str, Any]) -> list[str]:
    vids = batch.get("vid")
    if vids is None:
        raise DataError("loader batch has no 'vid'")
    return [str(v) for v in vids]


def _run_videos(
    model: Any, tasks: tuple[TaskSpec, ...], cfg: EvalConfig, frames: str, n_videos: int
) -> _Outputs:
    name = model.meta.name
    outs = _Outputs()
    gen_kinds = [t.name for t in tasks if "generate" in t.requires]
    outs.generations = {k: {} for k in gen_kinds}
    want_emb = any("encode_videos" in t.requires for t in tasks)
    dim: int | None = None
    # Counted in videos, not batches: a model taking frames at their stored size gets batches of one.
    bar = Progress(f"eval {name}: ran the model on", n_videos, unit="videos", enabled=cfg.progress)
    for batch in _video_batches(model, cfg, frames):
        vids = _batch_vids(batch)
        outs.video_ids.extend(vids)
        if want_emb:
            emb = check_embeddings(
                model.encode_videos(batch), vids, model_name=name, what="encode_videos", dim=dim
            )
            dim = emb.shape[1]
            outs.video_embeddings.append(emb)
        for kind in gen_kinds:
            texts = check_generations(model.generate(batch, kind=kind), vids, model_name=name, kind=kind)
            outs.generations[kind].update(zip(vids, texts))
        bar.update(len(vids))
    bar.close()
    return outs


def _split_texts(cfg: EvalConfig) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """(vids in split order, text ids per kind, text id -> text) of the references."""
    from create_bench.data.shards import read_table

    table = read_table(cfg.data_dir, cfg.split, columns=["vid", *TEXT_COLUMN.values()])
    vids = [str(v) for v in table.column("vid").to_pylist()]
    ids: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for kind in TEXT_KINDS:
        ids[kind] = []
        for vid, items in zip(vids, table.column(TEXT_COLUMN[kind]).to_pylist()):
            for k, text in enumerate(items or []):
                tid = text_id(vid, kind, k)
                ids[kind].append(tid)
                texts[tid] = text
    return vids, ids, texts


def _run_texts(model: Any, cfg: EvalConfig, texts: dict[str, str], dim: int) -> tuple[list[str], np.ndarray]:
    """Encode every reference text once (duplicate strings share one call) in ``text_batch_size`` chunks."""
    name = model.meta.name
    tids = list(texts)
    unique = list(dict.fromkeys(texts[t] for t in tids))
    chunks = [unique[i : i + cfg.text_batch_size] for i in range(0, len(unique), cfg.text_batch_size)]
    parts = []
    bar = track(chunks, desc=f"eval {name}: encoded", unit="text batches", enabled=cfg.progress)
    for chunk in bar:
        parts.append(
            check_embeddings(
                model.encode_texts(list(chunk)), chunk, model_name=name, what="encode_texts", dim=dim
            )
        )
    emb = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
    row = {t: i for i, t in enumerate(unique)}
    return tids, emb[[row[texts[t]] for t in tids]]


def _check_coverage(got: list[str], expected: list[str], model_name: str, data_dir: Path, split: str) -> None:
    """Every video of the split exactly once: anything else would silently change the metrics."""
    counts = Counter(got)
    dups = [v for v, c in counts.items() if c > 1]
    missing, extra = id_differences(expected, counts)
    if dups or missing or extra:
        raise DataError(
            f"evaluating {model_name!r}: the video pass did not cover split {split!r} exactly once"
            + (f"; duplicated: {_few(dups)}" if dups else "")
            + (f"; missing: {_few(missing)}" if missing else "")
            + (f"; unexpected: {_few(extra)}" if extra else ""),
            path=str(data_dir),
        )


def _check_device(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable(f"--device {device} was asked for, but torch sees no CUDA device here")


def _check_inputs_available(meta: ModelMeta, info: Any) -> None:
    """A frame model cannot run on a features-only dataset (manifest ``"videos": false``): say so
    before anything runs."""
    sets = sorted((info.manifest.get("feature_sets") or {}).keys())
    if meta.inputs == "frames" and info.manifest.get("videos") is False:
        raise ConfigError(
            f"model {meta.name!r} reads video frames, but dataset {info.name!r} is features-only (no "
            f"video files; feature sets: {', '.join(sets) or 'none'}): use a model that reads features"
        )


def run_model(model: Any, cfg: EvalConfig, tasks: tuple[TaskSpec, ...], frames: str) -> _Outputs:
    """Set the model up and collect its validated outputs for ``tasks`` on the split (nothing written)."""
    _check_device(cfg.device)
    name = model.meta.name
    ctx = ModelContext(
        data_dir=cfg.data_dir,
        split=cfg.split,
        device=cfg.device,
        seed=cfg.seed,
        cache_dir=cfg.results_dir / ".cache",
    )
    setup = getattr(model, "setup", None)  # optional: a plain class may implement only the protocol
    if callable(setup):
        setup(ctx)
    vids, text_ids, texts = _split_texts(cfg)
    outs = _run_videos(model, tasks, cfg, frames, len(vids))
    _check_coverage(outs.video_ids, vids, name, cfg.data_dir, cfg.split)
    if outs.video_embeddings:
        dim = outs.video_embeddings[0].shape[1]
        wanted = {t: texts[t] for kind in TEXT_KINDS for t in text_ids[kind]}
        outs.text_ids, outs.text_embeddings = _run_texts(model, cfg, wanted, dim)
    return outs


# ----------------------------------------------------------------------------------------------
# Writing, scoring, reporting


#: ``schema_version`` of the leaderboard's model card (create_bench/leaderboard/submission.schema.json).
CARD_SCHEMA_VERSION = 1


def _model_card(model: Any, model_args: dict[str, Any], spec: str | None, frames: str) -> dict[str, Any]:
    """The model card that travels with the predictions; its ``frames``/``decode`` enter the signature.

    It carries everything eval knows (schema version, the CREATE configs the model declares), so a
    submitter adds only what eval cannot know: ``create-bench submit --team ... --[no-]test-data-seen``.
    """
    card = {"schema_version": CARD_SCHEMA_VERSION, **model.meta.to_dict()}
    if model.meta.create_configs is not None:
        card["create_configs"] = list(model.meta.create_configs)
    if model.meta.inputs == "frames":
        from create_bench.video.decoding import backend_version
        from create_bench.video.sampling import policy_signature

        card["frames"] = policy_signature(frames)  # the policy actually used, versioned
        card["decode"] = backend_version("decord")
    else:
        card["frames"] = None
    card["args"] = model_args
    if spec is not None:
        card["spec"] = spec
    return card


def _write_predictions(pred_dir: Path, outs: _Outputs, card: dict[str, Any]) -> None:
    from create_bench.predictions import write_predictions

    vid_order = outs.video_ids
    generations = None
    if outs.generations:
        generations = {
            vid: {kind: outs.generations[kind][vid] for kind in outs.generations} for vid in vid_order
        }
    video_emb = l2_normalise(np.concatenate(outs.video_embeddings)) if outs.video_embeddings else None
    text_emb = l2_normalise(outs.text_embeddings) if outs.text_embeddings is not None else None
    # write_predictions replaces the directory whole and atomically: a crash never leaves half of one.
    write_predictions(
        pred_dir,
        video_ids=vid_order if video_emb is not None else None,
        video_embeddings=video_emb,
        text_ids=outs.text_ids if outs.text_embeddings is not None else None,
        text_embeddings=text_emb,
        generations=generations,
        model_card=card,
    )


def evaluate(
    model: Any, cfg: EvalConfig, *, model_args: dict[str, Any] | None = None, model_spec: str | None = None
) -> EvalOutcome:
    """Evaluate ``model`` (already built, e.g. by :func:`create_bench.models.load_model`) as ``cfg`` says.

    Args:
        model: an object with the model protocol and a ``meta`` (:class:`ModelMeta`).
        cfg: the run configuration.
        model_args: the options the model was built with (part of the cache key and the model card).
        model_spec: what the user typed for the model (registry name or ``file.py:Class``), for the card.

    Returns:
        An :class:`EvalOutcome` with the results dict and the written paths.
    """
    from create_bench.data.shards import open_dataset

    model_args = dict(model_args or {})
    bind = getattr(model, "bind_dataset", None)  # optional: per-dataset defaults, before meta is read
    if callable(bind):
        bind(cfg.data_dir)
    name = model.meta.name
    info = open_dataset(cfg.data_dir)
    if cfg.split not in info.splits:
        raise ConfigError(
            f"dataset {info.name!r} has no split {cfg.split!r} (splits: {', '.join(info.splits)})"
        )
    _check_inputs_available(model.meta, info)
    wanted, tasks, skipped = _select_tasks(model, cfg)
    cfg = dataclasses.replace(cfg, tasks=tuple(t.name for t in tasks))
    frames = cfg.frames or model.meta.frames
    results_path, pred_dir = output_paths(cfg, name, info.name)
    check_results_file(results_path)
    if not cfg.overwrite:
        _check_owner(model, results_path, pred_dir)
    key = cache_key(model, model_args, info.fingerprint, cfg, frames)
    cached = not cfg.no_cache and _cache_hit(pred_dir, key)
    if cached:
        log.info(
            "reusing cached predictions in %s (same model, args, data, split, frames; --no-cache to rerun)",
            pred_dir,
        )
        _refresh_card(pred_dir, _model_card(model, model_args, model_spec, frames))
    else:
        outs = run_model(model, cfg, tasks, frames)
        _cache_file(pred_dir).unlink(missing_ok=True)  # the old key must never vouch for new predictions
        _write_predictions(pred_dir, outs, _model_card(model, model_args, model_spec, frames))
        atomic_write_json(_cache_file(pred_dir), {"key": _key_hash(key), "inputs": key})
    results = score_run(pred_dir, cfg, model, model_args, frames, tasks)
    results["skipped_tasks"] = _skip_reasons(results.get("skipped_tasks") or {}, name, wanted, skipped)
    _write_results(results_path, results)
    report_path = None
    if cfg.report:
        from create_bench.report import write_report

        report_path = write_report(
            results, results_path, pred_dir=pred_dir, data_dir=cfg.data_dir, split=cfg.split
        )
    return EvalOutcome(
        results, results_path, pred_dir, report_path, cached, tuple(t.name for t in tasks), skipped
    )


def _select_tasks(
    model: Any, cfg: EvalConfig
) -> tuple[tuple[TaskSpec, ...], tuple[TaskSpec, ...], tuple[str, ...]]:
    """(requested tasks, the ones the model implements, names of the others); none is an error."""
    name = model.meta.name
    supported = model_tasks(model)
    wanted = parse_tasks(list(cfg.tasks) if cfg.tasks else None)
    tasks = tuple(t for t in wanted if t.name in supported)
    skipped = tuple(t.name for t in wanted if t.name not in supported)
    if not tasks:
        raise ModelError(
            f"model {name!r} supports none of the requested tasks {[t.name for t in wanted]} (it supports {list(supported)})"
        )
    if skipped:
        log.warning("model %r does not implement %s: skipping those tasks", name, ", ".join(skipped))
    return wanted, tasks, skipped


def _skip_reasons(
    from_predictions: dict[str, str],
    model_name: str,
    wanted: tuple[TaskSpec, ...],
    unsupported: tuple[str, ...],
) -> dict[str, str]:
    """Why each task was not scored: the run's reason (not asked for, not implemented by the model)
    where it has one, else what the predictions lacked."""
    out = dict(from_predictions)
    for task in TASKS.values():
        if task.name in unsupported:
            why = f"model {model_name!r} does not implement {' and '.join(task.requires)}"
        elif task not in wanted:
            why = "not requested (--tasks)"
        else:
            continue
        for key in [k for k in out if k.split(":")[0] == task.name]:
            del out[key]
        out[task.name] = why
    return out


def score_run(
    pred_dir: Path,
    cfg: EvalConfig,
    model: Any,
    model_args: dict[str, Any],
    frames: str,
    tasks: tuple[TaskSpec, ...],
) -> dict[str, Any]:
    """Score the predictions with the code of ``create-bench score`` and add what only the harness knows."""
    from create_bench.scoring import score_predictions

    results = score_predictions(pred_dir, cfg.data_dir, cfg.split, cfg.scoring)
    model_info = dict(results.get("model") or {})
    meta = model.meta.to_dict()
    for k in ("version", "description", "params", "training_data", "license"):
        if model_info.get(k) is None:
            model_info[k] = meta[k]
    model_info["args"] = model_args
    results["model"] = model_info
    results["eval"] = {
        "tasks": [t.name for t in tasks],
        "frames": frames if model.meta.inputs == "frames" else None,
        "inputs": model.meta.inputs,
        "frame_size": list(model.meta.frame_size) if model.meta.frame_size else None,
        "feature_set": model.meta.feature_set,
        "batch_size": cfg.batch_size,
        "device": cfg.device,
        "seed": cfg.seed,
        "predictions": str(pred_dir),
        # Where the references came from (create-bench submit --local defaults --data to it) and
        # which class made the predictions (a different class of the same name is refused). As
        # given (relative to the working directory when relative): no machine's paths in results
        # that get committed or submitted.
        "data": str(cfg.data_dir),
        "model_class": _model_class(model),
    }
    return results


def _write_results(path: Path, results: dict[str, Any]) -> None:
    from create_bench.results import write_results

    write_results(path, results)  # validates, then writes atomically


def main_scores(results: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(group, metric, value) of each task's headline number present in ``results``."""
    out = []
    scores = results.get("scores") or {}
    for task in TASKS.values():
        for group in task.score_groups:
            if group in scores and task.main_score in scores[group]:
                metric = task.main_score
                out.append((group, metric, float(scores[group][metric])))
    return out


def summary_line(results: dict[str, Any]) -> str:
    """One line: model, dataset/split, the headline scores, and the signature."""
    model = (results.get("model") or {}).get("name", "?")
    ds = results.get("dataset") or {}
    parts = [f"{group} {metric} {value:.1f}" for group, metric, value in main_scores(results)]
    sig = results.get("signature")
    sig_s = sig if isinstance(sig, str) else (sig or {}).get("string", "") if isinstance(sig, dict) else ""
    return f"{model} | {ds.get('name', '?')}:{ds.get('split', '?')} | " + " | ".join(parts) + f" | {sig_s}"


__all__ = [
    "CACHE_VERSION",
    "DEFAULT_RESULTS_DIR",
    "EvalConfig",
    "EvalOutcome",
    "cache_key",
    "check_embeddings",
    "check_generations",
    "evaluate",
    "main_scores",
    "output_paths",
    "run_model",
    "score_run",
    "summary_line",
]
