"""Small ALWIG configs for tests.

``ALWIGConfig()`` is the paper's model (CLIP features, 12-layer GPT-2). The unit tests were written
against the earlier defaults (the CREATE-sample core with the extensions off but character bigrams
on); :func:`small_cfg` keeps them, so each test states only what it is about.
"""

from __future__ import annotations

from typing import Any

from create_bench.models.alwig.config import ALWIGConfig

#: The defaults ``ALWIGConfig`` had before they became the paper's model.
SMALL_DEFAULTS: dict[str, Any] = dict(
    encoder="fixed",
    feature_set=None,
    feature_dim=None,
    num_frames=8,
    frame_size=(64, 64),
    max_tags=8,
    min_tag_count=1,
    unk_tag_buckets=1,
    tag_dropout=0.5,
    hidden_size=128,
    num_heads=4,
    ffn_size=512,
    align_layers=2,
    text_layers=2,
    dropout=0.0,
    embed_dim=128,
    max_text_len=40,
    min_char_count=1,
    max_vocab=8000,
    gpt_layers=3,
    gpt_heads=4,
    gpt_width=128,
    max_gen_len=32,
    epochs=22,
    batch_size=64,
    lr=2e-3,
    gpt_lr=None,
    eval_every=2,
    encode_batch_size=32,
    num_workers=0,
    extensions={"text_bigram_buckets": 8192},
)


def small_cfg(**kw: Any) -> ALWIGConfig:
    """:data:`SMALL_DEFAULTS` with ``kw`` (extension fields flat or as ``extensions={...}``)."""
    return ALWIGConfig.from_dict(dict(SMALL_DEFAULTS)).replace(**kw)
