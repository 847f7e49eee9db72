"""The text encoder behind BERTScore and ACTEr-r (layer 3): a BERT-family model at one layer.

``TextEncoder(source)`` loads any ``transformers`` encoder from a local directory or a hub name;
hub names resolve only from the local cache (``local_files_only``: nothing is ever downloaded).
Like ``bert_score``, the model is cut after ``layer`` transformer blocks and the last hidden state
is used, every sentence being encoded with its special tokens (``[CLS] ... [SEP]``). Sentences are
sorted by length and batched so that padding stays small; outputs are L2-normalised float32.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import ConfigError

#: Serialises model loading (see TextEncoder.__init__).
_LOAD_LOCK = threading.Lock()

#: Files whose bytes identify a local encoder (weights, config, vocabulary).
_IDENTITY_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
#: Default layer (bert_score's choice for bert-base-chinese; capped at the model's depth).
DEFAULT_LAYER = 8


@dataclass(frozen=True)
class Encoded:
    """Token vectors of n sentences, stacked.

    Attributes:
        vectors: ``[T, D]`` float32, L2-normalised.
        offsets: ``[n + 1]`` sentence i is rows ``offsets[i]:offsets[i + 1]``.
        ids: ``[T]`` token ids.
        special: ``[T]`` bool, special tokens (``[CLS]``, ``[SEP]``).
        spans: ``[T, 2]`` character span of each token in the encoded text (``[0, 0]`` for specials).
    """

    vectors: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray
    special: np.ndarray
    spans: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def rows(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))


def _hash_dir(path: Path) -> str:
    h = hashlib.sha256()
    for name in _IDENTITY_FILES:
        f = path / name
        if f.is_file():
            h.update(name.encode() + b"\0")
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
    return h.hexdigest()[:8]


class TextEncoder:
    """A frozen BERT-family encoder at one layer.

    Args:
        source: a local model directory or a hub name present in the local cache.
        layer: hidden layer to use (default: 8, or the model's last layer if it has fewer).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: sentences per forward pass.

    Raises:
        ConfigError: the encoder cannot be loaded (not a directory and not in the cache), the
            layer is out of range, or the device is unavailable.
    """

    def __init__(self, source: str, *, layer: int | None = None, device: str = "cpu", batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.source = source
        local = Path(source)
        try:
            # One load at a time: from_pretrained switches process-wide state (default dtype and
            # device, weight init and tying) and restores it on exit, so two threads loading at once
            # can leave it switched for everything built afterwards (seen: GPT-2 built untied).
            with _LOAD_LOCK:
                self.tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, local_files_only=True)
                model = AutoModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load text encoder {source!r} (a local directory, or a hub name already in the "
                f"local cache; nothing is downloaded): {str(exc).splitlines()[0]}"
            ) from exc
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError(f"text encoder {source!r} has no fast tokenizer (character offsets are needed)")
        depth = int(getattr(model.config, "num_hidden_layers", 0))
        self.layer = min(DEFAULT_LAYER, depth) if layer is None else int(layer)
        if not 1 <= self.layer <= depth:
            raise ConfigError(f"text encoder layer must be in 1..{depth} for {source!r}, got {self.layer}")
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        self._cut = layers is not None
        if layers is not None:  # as bert_score: drop the blocks above ``layer`` (faster, same vectors)
            model.encoder.layer = torch.nn.ModuleList(list(layers)[: self.layer])
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for the text encoder but CUDA is not available")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(min(getattr(self.tokenizer, "model_max_length", 512) or 512, 512))
        if local.is_dir():
            ident = f"{local.resolve().name}@{_hash_dir(local)}"
        else:
            ident = f"{source}@{str(getattr(model.config, '_commit_hash', None) or 'cache')[:8]}"
        self.identity = ident

    def signature(self) -> str:
        """``<name>@<hash>,L<layer>,max<len>,fp32`` (no ``|``: it sits inside a score signature)."""
        return f"{self.identity},L{self.layer},max{self.max_length},fp32"

    def encode(self, texts: list[str]) -> Encoded:
        """Token vectors of ``texts`` (encoded as given: normalise them first)."""
        import torch

        enc = self.tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        out: list[np.ndarray | None] = [None] * len(ids)
        order = np.argsort(-lengths, kind="stable")
        pad = int(self.tokenizer.pad_token_id or 0)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                width = int(lengths[idx].max())
                batch = np.full((len(idx), width), pad, dtype=np.int64)
                mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    batch[row, : lengths[i]] = ids[i]
                    mask[row, : lengths[i]] = 1
                x = torch.from_numpy(batch).to(self.device)
                m = torch.from_numpy(mask).to(self.device)
                res = self.model(input_ids=x, attention_mask=m, output_hidden_states=not self._cut)
                hidden = res.last_hidden_state if self._cut else res.hidden_states[self.layer]
                hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu().numpy()
                for row, i in enumerate(idx):
                    out[i] = hidden[row, : lengths[i]]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        dim = int(self.model.config.hidden_size)
        vectors = np.concatenate(out) if out else np.zeros((0, dim), np.float32)  # type: ignore[arg-type]
        special = (
            np.concatenate([np.asarray(s, bool) for s in enc["special_tokens_mask"]])
            if ids
            else np.zeros(0, bool)
        )
        spans = (
            np.concatenate([np.asarray(s, np.int64).reshape(-1, 2) for s in enc["offset_mapping"]])
            if ids
            else np.zeros((0, 2), np.int64)
        )
        return Encoded(
            vectors.astype(np.float32, copy=False),
            offsets,
            np.concatenate(ids) if ids else np.zeros(0, np.int64),
            special,
            spans,
        )


_ENCODERS: dict[tuple[str, Any, str, int], TextEncoder] = {}


def get_encoder(
    source: str, *, layer: int | None = None, device: str = "cpu", batch_size: int = 64
) -> TextEncoder:
    """A shared :class:`TextEncoder` per (source, layer, device, batch size) in this process."""
    key = (os.path.abspath(source) if Path(source).is_dir() else source, layer, device, batch_size)
    if key not in _ENCODERS:
        _ENCODERS.clear()  # one model in memory at a time
        _ENCODERS[key] = TextEncoder(source, layer=layer, device=device, batch_size=batch_size)
    return _ENCODERS[key]
