"""Model output validation at the harness boundary (layer 4): embeddings and generations are
checked batch by batch (shapes, dtype, NaN/inf, missing/extra ids, non-string or empty texts) and
anything wrong raises :class:`ModelError` naming the model and the problem.

Split out of :mod:`create_bench.runner`, which re-exports the public checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from create_bench.errors import ModelError
from create_bench.types import id_differences


def _to_numpy(out: Any, model_name: str, what: str) -> np.ndarray:
    if hasattr(out, "detach"):  # torch tensor, on any device
        out = out.detach().cpu()
        if str(out.dtype) == "torch.bfloat16":
            out = out.float()
        out = out.numpy()
    if not isinstance(out, np.ndarray):
        try:
            out = np.asarray(out)
        except Exception as exc:
            raise ModelError(
                f"model {model_name!r}: {what} returned {type(out).__name__}, not an array"
            ) from exc
    return out


def check_embeddings(
    out: Any, ids: list[str], *, model_name: str, what: str, dim: int | None = None
) -> np.ndarray:
    """Validate one batch of embeddings against the ids it should cover; return float32 [len(ids), D].

    Accepts an array/tensor with one row per id, or a mapping id -> vector (then missing and extra ids
    are named). Raises :class:`ModelError` on anything else.
    """
    if isinstance(out, dict):
        missing, extra = id_differences(ids, out)
        if missing or extra:
            raise ModelError(
                f"model {model_name!r}: {what} returned ids that do not match the batch"
                + (f"; missing: {_few(missing)}" if missing else "")
                + (f"; extra: {_few(extra)}" if extra else "")
            )
        rows = [_to_numpy(out[i], model_name, what) for i in ids]
        if len({r.shape for r in rows}) > 1:
            raise ModelError(f"model {model_name!r}: {what} returned vectors of different shapes")
        out = np.stack(rows) if rows else np.zeros((0, dim or 0), np.float32)
    arr = _to_numpy(out, model_name, what)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)):
        raise ModelError(f"model {model_name!r}: {what} returned dtype {arr.dtype}; expected a float array")
    if arr.ndim != 2:
        raise ModelError(
            f"model {model_name!r}: {what} returned shape {tuple(arr.shape)}; expected 2-D [{len(ids)}, D]"
        )
    if arr.shape[0] != len(ids):
        raise ModelError(
            f"model {model_name!r}: {what} returned {arr.shape[0]} rows for {len(ids)} inputs "
            f"(one row per input, in order; inputs of this batch: {_few(ids)})"
        )
    if arr.shape[1] == 0:
        raise ModelError(f"model {model_name!r}: {what} returned 0-dimensional embeddings")
    if dim is not None and arr.shape[1] != dim:
        raise ModelError(
            f"model {model_name!r}: {what} returned dimension {arr.shape[1]}, but earlier embeddings have {dim}"
        )
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = [ids[i] for i in np.flatnonzero(~finite)]
        raise ModelError(
            f"model {model_name!r}: {what} returned NaN or infinite values for {len(bad)} input(s): {_few(bad)}"
        )
    if np.abs(arr).max(initial=0.0) > np.finfo(np.float32).max:
        raise ModelError(f"model {model_name!r}: {what} returned values beyond float32 range")
    return arr.astype(np.float32, copy=False)


def check_generations(out: Any, vids: list[str], *, model_name: str, kind: str) -> list[str]:
    """Validate one batch of generations: a list of non-empty strings, one per vid (or a vid mapping)."""
    what = f"generate(kind={kind!r})"
    if isinstance(out, dict):
        missing, extra = id_differences(vids, out)
        if missing or extra:
            raise ModelError(
                f"model {model_name!r}: {what} returned vids that do not match the batch"
                + (f"; missing: {_few(missing)}" if missing else "")
                + (f"; extra: {_few(extra)}" if extra else "")
            )
        out = [out[v] for v in vids]
    if isinstance(out, str) or not isinstance(out, (list, tuple)):
        raise ModelError(
            f"model {model_name!r}: {what} returned {type(out).__name__}; expected a list of str"
        )
    if len(out) != len(vids):
        raise ModelError(
            f"model {model_name!r}: {what} returned {len(out)} texts for {len(vids)} videos "
            f"(one per video, in order; vids of this batch: {_few(vids)})"
        )
    for vid, text in zip(vids, out):
        if not isinstance(text, str):
            raise ModelError(
                f"model {model_name!r}: {what} returned a non-string {type(text).__name__} {text!r} for vid {vid!r}"
            )
        if not text.strip():
            raise ModelError(f"model {model_name!r}: {what} returned an empty text for vid {vid!r}")
    return list(out)


def _few(items: list[Any], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" … (+{len(items) - n} more)" if len(items) > n else "")
