"""ALWIG: config, vocabularies, network shapes and masks, losses, decoding, checkpoints, DDP, GPT-2 dirs."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from alwig_util import small_cfg

from create_bench.errors import ConfigError, ModelError
from create_bench.models.alwig.bundle import ALWIG, read_record
from create_bench.models.alwig.config import ALWIGConfig, load_config
from create_bench.models.alwig.model import World, contrastive_loss
from create_bench.models.alwig.tokenizer import CharTokenizer, TagVocab

TEXTS = [
    "红色的球向左移动",
    "蓝色方块在旋转",
    "绿色三角形向上跳",
    "白色的猫在客厅里",
    "黑色的狗跑得很快",
    "黄色星星变大",
]
TAGS = [["球", "红色"], ["方块"], ["三角", "绿色", "跳"], ["猫"], ["狗", "快"], []]
FDIM = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def tiny_cfg(**kw) -> ALWIGConfig:
    base = dict(
        encoder="features",
        feature_set="toy",
        feature_dim=FDIM,
        hidden_size=32,
        num_heads=2,
        ffn_size=64,
        align_layers=1,
        text_layers=1,
        embed_dim=16,
        gpt_layers=1,
        gpt_heads=2,
        gpt_width=32,
        max_gen_len=12,
        max_text_len=16,
        dropout=0.0,
        max_tags=4,
        num_frames=4,
        no_repeat_ngram=0,
    )
    base.update(kw)
    return small_cfg(**base)


def tiny_bundle(**kw) -> ALWIG:
    cfg = tiny_cfg(**kw)
    return ALWIG.create(cfg, TEXTS, TAGS)


def toy_batch(bundle: ALWIG, n: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 4, FDIM, generator=g)
    mask = torch.ones(n, 4, dtype=torch.bool)
    mask[1, 3] = False
    mask[2, 2:] = False
    texts = [TEXTS[i % len(TEXTS)] for i in range(n)]
    batch = {
        "feats": feats,
        "frame_mask": mask,
        "tag_ids": bundle.tag_tensor([TAGS[i % len(TAGS)] for i in range(n)]),
    }
    chars = bundle.tag_char_tensor([TAGS[i % len(TAGS)] for i in range(n)])
    if chars is not None:
        batch["tag_chars"] = chars
    for kind in ("caption", "title"):
        batch[f"{kind}_text"] = bundle.text_tensor(texts)
        batch[f"{kind}_key"] = bundle.key_tensor(texts)
        batch[f"{kind}_seq"] = bundle.seq_tensor(texts, kind)
    return batch


# ----------------------------------------------------------------------------------------- config
def test_config_rejects_unknown_keys_with_suggestion(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("hiden_size: 64\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'hiden_size'.*did you mean 'hidden_size'"):
        load_config(p)


def test_config_type_and_value_errors(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("epochs: many\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"epochs must be int.*str 'many'.*c\.yaml"):
        load_config(p)
    with pytest.raises(ConfigError, match="divisible"):
        ALWIGConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ConfigError, match="feature_set"):
        ALWIGConfig(encoder="features", feature_set=None)
    with pytest.raises(ConfigError, match=r"unknown key 'extensions\.copy_tag'.*did you mean 'copy_tags'"):
        ALWIGConfig.from_dict({"extensions": {"copy_tag": True}})
    with pytest.raises(ConfigError, match="both flat"):
        ALWIGConfig.from_dict({"copy_tags": True, "extensions": {"copy_tags": False}})
    with pytest.raises(ConfigError, match="exact_match must be in"):
        ALWIGConfig().replace(exact_match=1.5)
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(None, not_a_field=1)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_load() -> None:
    sample = load_config("sample")
    assert sample.encoder == "fixed" and sample.frame_size == (64, 64)
    paper = load_config("paper")
    assert paper == load_config(None) == ALWIGConfig()
    assert paper.encoder == "features" and paper.gpt_layers == 12 and paper.gpt_width == 768
    for cfg in (sample, paper):
        assert ALWIGConfig.from_dict(cfg.to_dict()) == cfg  # JSON round trip (checkpoints)


def test_paper_yaml_lists_every_field_and_equals_the_defaults() -> None:
    """ALWIG by default is the paper's model: paper.yaml states every key (nothing inherited
    silently) and its values are ALWIGConfig's defaults, every extension off."""
    import dataclasses

    import yaml

    from create_bench.models.alwig.config import CONFIG_DIR, extension_names, field_names

    raw = yaml.safe_load((CONFIG_DIR / "paper.yaml").read_text("utf-8"))
    assert sorted(raw) == sorted(field_names())
    assert sorted(raw["extensions"]) == sorted(extension_names())
    assert ALWIGConfig.from_dict(raw) == ALWIGConfig()
    assert ALWIGConfig().extensions.enabled == []
    defaults = ALWIGConfig().extensions
    for f in dataclasses.fields(defaults):  # each extension's own default is "off"
        assert getattr(defaults, f.name) == f.default


def test_sample_yaml_is_unchanged_by_the_extensions_block() -> None:
    """The CREATE-sample config resolves to exactly what the flat sample.yaml of before gave (same
    training, same scores): every value, written the old flat way, reads back equal."""
    from create_bench.models.alwig.config import extension_names

    sample = load_config("sample")
    flat = {k: v for k, v in sample.to_dict().items() if k != "extensions"}
    flat.update(sample.to_dict()["extensions"])
    assert ALWIGConfig.from_dict(flat) == sample
    before = {  # configs/sample.yaml before the block (and the defaults it relied on)
        "encoder": "fixed", "encoder_path": None, "feature_set": None, "feature_dim": None,
        "frames": "uniform-center@8", "num_frames": 8, "frame_size": [64, 64], "frame_groups": True,
        "use_tags": True, "max_tags": 8, "min_tag_count": 1, "unk_tag_buckets": 1, "tag_dropout": 0.5,
        "hidden_size": 128, "num_heads": 4, "ffn_size": 512, "align_layers": 2, "text_layers": 2,
        "dropout": 0.0, "embed_dim": 128, "max_text_len": 40, "text_bigram_buckets": 8192,
        "text_bow": True, "tag_chars": True, "tag_lexical": True, "max_tag_chars": 8,
        "lexical_idf": True, "exact_match": 0.5, "exact_match_dims": 1024, "init_temperature": 0.07,
        "max_logit_scale": 100.0, "min_char_count": 1, "max_vocab": 8000, "gpt_path": None,
        "gpt_layers": 3, "gpt_heads": 4, "gpt_width": 128, "gpt_activation": "gelu_new",
        "max_gen_len": 40, "gen_video_bias": False, "gen_tag_chars": False, "copy_tags": True,
        "gen_kinds_per_video": 2, "use_align": True, "align_weight": 1.0, "gen_weight": 1.0,
        "title_weight": 1.0, "caption_weight": 1.0, "seed": 0, "epochs": 22, "pretrain_epochs": 2,
        "batch_size": 64, "lr": 2.0e-3, "gpt_lr": None, "weight_decay": 0.01, "warmup_ratio": 0.05,
        "grad_clip": 1.0, "eval_every": 2, "select_metric": "score", "encode_batch_size": 32,
        "num_workers": 0, "beam_size": 1, "no_repeat_ngram": 3, "length_penalty": 1.0,
    }  # fmt: skip
    assert ALWIGConfig.from_dict(before) == sample
    assert sorted(sample.extensions.enabled) == sorted(
        ["frame_groups", "text_bigram_buckets", "text_bow", "tag_chars", "tag_lexical", "lexical_idf",
         "exact_match", "copy_tags"]
    )  # fmt: skip
    assert set(extension_names()) <= set(before)


def test_config_follows_the_dataset(tmp_path: Path) -> None:
    """sample.yaml for CREATE-sample (by its manifest's generator), paper.yaml for anything else;
    the fixed encoder refuses every dataset that is not CREATE-sample."""
    import json

    from create_bench.models.alwig.config import check_dataset, config_for_dataset, default_config_name

    def dataset(name: str, generator: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "manifest.json").write_text(json.dumps({"name": name, "generator": {"name": generator}}))
        return d

    sample = dataset("create-sample", "create-sample")
    real = dataset("create-210k", "create-bench build")
    assert default_config_name(sample) == "sample" and default_config_name(real) == "paper"
    assert default_config_name(tmp_path / "nowhere") == "paper"
    assert config_for_dataset(sample) == load_config("sample")
    assert config_for_dataset(real) == load_config("paper")
    check_dataset(load_config("sample"), sample)
    with pytest.raises(ConfigError, match="fixed.*CREATE-sample.*create-bench build"):
        config_for_dataset(real, "sample")
    with pytest.raises(ConfigError, match="fixed"):
        check_dataset(load_config("sample"), tmp_path / "nowhere")


# ------------------------------------------------------------------------------------- tokenizers
def test_char_tokenizer_round_trip_and_specials(tmp_path: Path) -> None:
    tok = CharTokenizer.build(TEXTS + ["ＡＢ１"])  # full-width folds to half-width (NFKC)
    assert tok.tokens[:8] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]", "[TITLE]", "[CAPTION]"]
    ids = tok.encode("蓝色方块AB1")
    assert tok.decode(ids) == "蓝色方块AB1"
    assert tok.decode([*tok.encode("球"), tok.eos_id, *tok.encode("猫")]) == "球"  # stops at EOS
    assert tok.encode("龙")[0] == tok.unk_id
    tok.save(tmp_path / "vocab.txt")
    assert CharTokenizer.load(tmp_path / "vocab.txt").tokens == tok.tokens
    small = CharTokenizer.build(TEXTS, max_size=10)
    assert len(small) == 10


def test_bert_vocab_gets_task_tokens(tmp_path: Path) -> None:
    (tmp_path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "红", "色", "a", "##s"]) + "\n"
    )
    tok, added = CharTokenizer.from_vocab_file(tmp_path / "vocab.txt")
    assert added == 2 and tok.tokens[-2:] == ["[TITLE]", "[CAPTION]"]
    assert tok.bos_id == tok.cls_id and tok.eos_id == tok.sep_id  # Chinese GPT-2 convention
    assert tok.encode("红A 色") == [5, 7, 6]  # upper-case falls back to the uncased entry; no space token
    assert tok.decode([5, 8]) == "红s"  # WordPiece '##' dropped


def test_tag_vocab_unknown_buckets(tmp_path: Path) -> None:
    tags = TagVocab.build([["猫", "狗"], ["猫", "鱼"]], min_count=2, buckets=3)
    assert tags.tokens[:6] == ["[PAD]", "[CLS]", "[SEP]", "[UNK-TAG-0]", "[UNK-TAG-1]", "[UNK-TAG-2]"]
    assert tags.token_to_id["猫"] == 6 and "狗" not in tags.token_to_id
    enc = tags.encode(["猫", "狗", "Ｘ", ""], max_tags=5)
    assert enc[0] == tags.cls_id and enc[-1] == tags.sep_id and len(enc) == 5  # empty tag dropped
    assert 3 <= enc[2] < 6 and enc[3] == tags.unk_id("x")  # NFKC + lower-case before hashing
    assert tags.unk_id("狗") == TagVocab([], 3).unk_id("狗")  # stable across vocabularies/runs
    tags.save(tmp_path / "tags.txt")
    again = TagVocab.load(tmp_path / "tags.txt")
    assert again.tokens == tags.tokens and again.buckets == 3


# ---------------------------------------------------------------------------------- shapes, masks
def test_shapes_and_fixed_prefix_layout() -> None:
    b = tiny_bundle()
    batch = toy_batch(b)
    net = b.net.eval()
    h, m = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    assert h.shape == (6, 4 + 2 + 4, 32) and m.shape == (6, 10)
    assert m[2].tolist()[6:] == [True, True, False, False]  # frame mask
    assert m[0].tolist()[:6] == [True, True, True, True, False, False]  # [CLS] 2 tags [SEP] pad pad
    v = net.video_embed(h)
    t = net.text_embed(batch["caption_text"])
    assert v.shape == (6, 16) and t.shape == (6, 16)
    assert torch.allclose(v.norm(dim=1), torch.ones(6)) and torch.allclose(t.norm(dim=1), torch.ones(6))
    # fewer frames than num_frames are padded (and masked) to the same layout
    h3, m3 = net.align_tokens(batch["feats"][:, :3], batch["frame_mask"][:, :3], batch["tag_ids"])
    assert h3.shape == h.shape and not m3[:, -1].any()


def test_padding_is_masked_everywhere() -> None:
    b = tiny_bundle()
    net = b.net.eval()
    batch = toy_batch(b)
    feats = batch["feats"].clone()
    feats[2, 2:] = 1000.0  # garbage in masked frames must not matter
    with torch.no_grad():
        v1 = net.video_embed(net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])[0])
        v2 = net.video_embed(net.align_tokens(feats, batch["frame_mask"], batch["tag_ids"])[0])
        assert torch.allclose(v1, v2, atol=1e-5)
        # a text's embedding does not depend on how far the batch pads it
        short = b.text_tensor(["球"])
        padded = torch.nn.functional.pad(short, (0, 9), value=b.tokenizer.pad_id)
        assert torch.allclose(net.text_embed(short), net.text_embed(padded), atol=1e-5)
        # generation targets: padded positions carry no loss
        h, m = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
        seqs = batch["title_seq"]
        losses, tmask = net.gen_losses(h, m, seqs, torch.arange(6))
        assert (losses[~tmask] == 0).all() and tmask.sum() == (seqs[:, 1:] != b.tokenizer.pad_id).sum()


def test_no_tags_ablation_ignores_tags() -> None:
    b = tiny_bundle(use_tags=False)
    net = b.net.eval()
    batch = toy_batch(b)
    other = b.tag_tensor([["狗"], ["猫", "球"], [], ["x"], ["y"], ["z"]])
    with torch.no_grad():
        h1, _ = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
        h2, _ = net.align_tokens(batch["feats"], batch["frame_mask"], other)
    assert torch.equal(h1, h2)
    with_tags = tiny_bundle().net.eval()
    with torch.no_grad():
        g1, _ = with_tags.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
        g2, _ = with_tags.align_tokens(batch["feats"], batch["frame_mask"], other)
    assert not torch.allclose(g1, g2)


def test_bad_inputs_raise_model_error() -> None:
    b = tiny_bundle()
    batch = toy_batch(b)
    with pytest.raises(ModelError, match="12-dim"):
        b.net.align_tokens(torch.zeros(6, 4, 5), batch["frame_mask"], batch["tag_ids"])
    with pytest.raises(ModelError, match="at most 4 frames"):
        b.net.align_tokens(torch.zeros(6, 9, FDIM), torch.ones(6, 9, dtype=torch.bool), batch["tag_ids"])
    with pytest.raises(ModelError, match="features"):
        b.frame_features({"vid": ["a"]})


# -------------------------------------------------------------------------------------- losses
def test_contrastive_loss_matches_naive_reference() -> None:
    g = torch.Generator().manual_seed(1)
    v = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    t = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    keys = torch.tensor([1, 2, 3, 4, 5])
    scale = torch.tensor(10.0)
    logits = scale * v @ t.T
    ref = 0.5 * (
        torch.nn.functional.cross_entropy(logits, torch.arange(5))
        + torch.nn.functional.cross_entropy(logits.T, torch.arange(5))
    )
    assert torch.allclose(contrastive_loss(v, t, scale, keys), ref, atol=1e-6)
    # duplicate texts (equal keys) are positives of each other, never negatives
    dup = torch.tensor([1, 1, 3, 4, 5])
    tgt = torch.eye(5)
    tgt[0, 1] = tgt[1, 0] = 1
    tgt = tgt / tgt.sum(1, keepdim=True)
    ref_dup = 0.5 * (
        -(tgt * logits.log_softmax(1)).sum(1).mean() + -(tgt * logits.T.log_softmax(1)).sum(1).mean()
    )
    assert torch.allclose(contrastive_loss(v, t, scale, dup), ref_dup, atol=1e-6)


def test_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    b = tiny_bundle()
    batch = toy_batch(b)
    net = b.net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    first = None
    for _ in range(15):
        out = net(batch)
        if first is None:
            first = {k: float(v.detach()) for k, v in out.items()}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    last = {k: float(v) for k, v in net(batch).items()}
    assert last["loss"] < 0.7 * first["loss"]
    assert last["align"] < first["align"] and last["gen"] < first["gen"]


def test_no_align_ablation_has_no_alignment_loss() -> None:
    b = tiny_bundle(use_align=False)
    out = b.net(toy_batch(b))
    assert float(out["align"]) == 0.0 and torch.allclose(out["loss"], out["gen"] * b.cfg.gen_weight)
    out["loss"].backward()
    assert b.net.text_proj.weight.grad is None and b.net.logit_scale.grad is None


# ------------------------------------------------------------------------------------ decoding
def _trained_bundle(steps: int = 60, **kw) -> tuple[ALWIG, dict]:
    torch.manual_seed(0)
    b = tiny_bundle(**kw)
    batch = toy_batch(b)
    opt = torch.optim.AdamW(b.net.parameters(), lr=5e-3)
    for _ in range(steps):
        out = b.net(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    b.net.eval()
    return b, batch


def test_greedy_learns_and_beam1_equals_greedy() -> None:
    b, batch = _trained_bundle()
    h, m = b.net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    for kind in ("title", "caption"):
        greedy = b.net.greedy(h, m, kind, 12, 0)
        assert b.net.beam_search(h, m, kind, 12, 1, 0) == greedy
    assert b.generate(h, m, "caption", beam_size=1) == TEXTS  # overfit a tiny batch: exact recall
    beams = b.generate(h, m, "caption", beam_size=3)
    assert len(beams) == 6 and all(isinstance(t, str) and t for t in beams)


def test_untrained_beam1_equals_greedy_and_limits_hold() -> None:
    b = tiny_bundle()
    net = b.net.eval()
    batch = toy_batch(b)
    h, m = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    for ngram in (0, 2):
        g = net.greedy(h, m, "title", 7, ngram)
        assert net.beam_search(h, m, "title", 7, 1, ngram) == g
        assert all(1 <= len(s) <= 7 for s in g)
        assert all(not (set(s) & set(b.tokenizer.special_ids)) for s in g)
    for s in net.beam_search(h, m, "caption", 10, 4, 2):
        bigrams = list(zip(s, s[1:]))
        assert len(bigrams) == len(set(bigrams)) and 1 <= len(s) <= 10


def test_video_bias_option_decodes_consistently(tmp_path: Path) -> None:
    b, batch = _trained_bundle(steps=20, gen_video_bias=True)
    assert b.net.video_cond is not None and b.net.video_cond.weight.abs().sum() > 0  # it trains
    h, m = b.net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    assert b.net.beam_search(h, m, "caption", 10, 1, 0) == b.net.greedy(h, m, "caption", 10, 0)
    b.save(tmp_path / "ck")
    c = ALWIG.load(tmp_path / "ck")
    assert c.generate(h, m, "title", beam_size=2) == b.generate(h, m, "title", beam_size=2)


def test_tag_characters_in_the_decoder_prefix(tmp_path: Path) -> None:
    b, batch = _trained_bundle(steps=20, gen_tag_chars=True, tag_chars=True)
    net = b.net
    h, m = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    k = net.num_tag_tokens
    with_tags, without = net._prefix(h, batch["tag_ids"]), net._prefix(h)
    assert torch.equal(with_tags[:, k:], without[:, k:])  # frame positions untouched
    # a tag position gets exactly the mean GPT-2 embedding of its characters
    chars = b.tokenizer.encode(TAGS[2][0])  # "三角"
    expected = net.tag_char_norm(net.gpt.transformer.wte(torch.tensor(chars)).mean(0))
    assert torch.allclose(with_tags[2, 1] - without[2, 1], expected, atol=1e-5)
    assert torch.equal(with_tags[5], without[5])  # a video without tags: [CLS] [SEP] only
    # decoding reads the tags; beam 1 == greedy with them; a checkpoint round trip keeps it
    tags = [TAGS[i % len(TAGS)] for i in range(6)]
    tid = b.tag_tensor(tags)
    assert net.beam_search(h, m, "title", 10, 1, 0, tag_ids=tid) == net.greedy(
        h, m, "title", 10, 0, tag_ids=tid
    )
    b.save(tmp_path / "ck")
    c = ALWIG.load(tmp_path / "ck")
    assert c.generate(h, m, "caption", tags=tags) == b.generate(h, m, "caption", tags=tags)
    # the no-tags ablation ignores them in the prefix too
    nb, nbatch = _trained_bundle(steps=2, gen_tag_chars=True, use_tags=False)
    hh, mm = nb.net.align_tokens(nbatch["feats"], nbatch["frame_mask"], nbatch["tag_ids"])
    assert torch.equal(nb.net._prefix(hh, nbatch["tag_ids"]), nb.net._prefix(hh))


def test_tag_char_tensor_follows_the_tag_slots() -> None:
    assert tiny_bundle().tag_char_tensor(TAGS) is None  # neither feature: nothing to build
    b = tiny_bundle(tag_lexical=True, max_tag_chars=3)
    tags = [["三角", "Ｘ", "", "方块块块"], ["没见过的词"], []]
    chars, ids = b.tag_char_tensor(tags), b.tag_tensor(tags)
    assert chars.shape == (3, b.cfg.max_tags + 2, 3)
    pad = b.tokenizer.pad_id
    has_chars = (chars != pad).any(-1)
    tag_slots = (ids != b.tags.pad_id) & (ids != b.tags.cls_id) & (ids != b.tags.sep_id)
    assert torch.equal(has_chars, tag_slots & has_chars) and has_chars[0, 1:4].all()
    assert chars[0, 1].tolist() == [*b.tokenizer.encode("三角"), pad]
    assert chars[0, 2, 0] == b.tokenizer.encode("x")[0]  # normalised like tag_tensor ("Ｘ" -> "x")
    assert chars[0, 3].tolist() == b.tokenizer.encode("方块块")  # cut at max_tag_chars
    assert ids[1, 1] != b.tags.token_to_id.get("没见过的词")  # an unseen tag: one unknown id ...
    assert (chars[1, 1] != pad).sum() == 3  # ... but its characters are kept (3 of 5: the cut)
    assert not has_chars[2].any()


def test_lexical_channel_matches_a_tag_and_the_same_word() -> None:
    b = tiny_bundle(tag_lexical=True)
    net = b.net.eval()
    batch = toy_batch(b)
    h, _ = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    with pytest.raises(ModelError, match="tag characters"):
        net.video_embed(h)  # never silently "no tags"
    with torch.no_grad():
        # a tag and a text of the same characters get the same lexical vector (bigrams included)
        chars = b.tag_char_tensor([["红色的球"]])
        text = b.text_tensor(["红色的球"])[:, 1:]
        tag_side = net._lexical(chars, chars != b.tokenizer.pad_id)
        text_side = net._lexical(text, text != b.tokenizer.pad_id)
        assert torch.allclose(tag_side, text_side, atol=1e-6)
        # the tags change the video embedding; a video without tags gets no lexical part
        v = net.video_embed(h, batch["tag_chars"])
        other = b.tag_char_tensor([["狗"]] * 6)
        assert not torch.allclose(v[0], net.video_embed(h, other)[0])
        assert torch.allclose(v[5], F.normalize(net.video_proj(h[5:6, 0]), dim=-1)[0], atol=1e-6)
    # the no-tags ablation ignores them (and needs none)
    nb = tiny_bundle(tag_lexical=True, use_tags=False)
    nbatch = toy_batch(nb)
    hh, _ = nb.net.align_tokens(nbatch["feats"], nbatch["frame_mask"], nbatch["tag_ids"])
    assert torch.equal(nb.net.video_embed(hh), nb.net.video_embed(hh, nbatch["tag_chars"]))


def test_lexical_idf_weights_rare_characters_more(tmp_path: Path) -> None:
    b = tiny_bundle(tag_lexical=True, lexical_idf=True)
    idf, tok = b.net.char_idf, b.tokenizer
    n = len(TEXTS)
    # "色" occurs in all 6 texts, "球" in 1: idf = log((1 + N) / (1 + df)) + 1
    assert float(idf[tok.encode("色")[0]]) == pytest.approx(1.0, rel=1e-6)
    assert float(idf[tok.encode("球")[0]]) == pytest.approx(math.log((1 + n) / 2) + 1, rel=1e-6)
    with torch.no_grad():  # still: a tag and a text of the same characters, the same vector
        chars = b.tag_char_tensor([["红色的球"]])
        text = b.text_tensor(["红色的球"])[:, 1:]
        tag_side = b.net._lexical(chars, chars != tok.pad_id)
        assert torch.allclose(tag_side, b.net._lexical(text, text != tok.pad_id), atol=1e-6)
        # the weighted mean differs from the plain one
        plain = tiny_bundle(tag_lexical=True)
        plain.net.load_state_dict(b.net.state_dict(), strict=False)
        assert not torch.allclose(plain.net._lexical(chars, chars != tok.pad_id), tag_side)
    b.save(tmp_path / "ck")  # the weights are saved with the model
    assert torch.equal(ALWIG.load(tmp_path / "ck").net.char_idf, idf)


def test_exact_match_channel_adds_the_cosine_of_idf_weighted_character_bags() -> None:
    w = 0.3
    b = tiny_bundle(tag_lexical=True, lexical_idf=True, exact_match=w, exact_match_dims=64)
    net, tok = b.net.eval(), b.tokenizer
    e, dims = b.cfg.embed_dim, 64
    assert b.cfg.embedding_width == e + dims + 2
    tags = [["红色的球"], ["狗"], []]
    batch = toy_batch(b, n=3)
    with torch.no_grad():
        h, _ = net.align_tokens(batch["feats"], batch["frame_mask"], b.tag_tensor(tags))
        v = net.video_embed(h, b.tag_char_tensor(tags))
        t = b.encode_texts(["红色的球", "蓝色方块在旋转"])
    assert v.shape == (3, e + dims + 2) and t.shape == (2, e + dims + 2)
    assert torch.allclose(v.norm(dim=1), torch.ones(3)) and torch.allclose(t.norm(dim=1), torch.ones(2))
    # dot product = (1 - w) x learned cosine + w x bag cosine
    dense_v, dense_t = v[:, :e] / math.sqrt(1 - w), t[:, :e] / math.sqrt(1 - w)
    bag_v, bag_t = v[:, e:] / math.sqrt(w), t[:, e:] / math.sqrt(w)
    assert torch.allclose(dense_v.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(t @ v.T, (1 - w) * dense_t @ dense_v.T + w * bag_t @ bag_v.T, atol=1e-6)
    # a tag and a text of the same characters: bag cosine 1; no shared character: 0
    assert float(bag_t[0] @ bag_v[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(bag_t[0] @ bag_v[1]) == pytest.approx(0.0, abs=1e-6)
    # the bag is the IDF-weighted character count ("色" is in every text: idf 1, "球" is rare)
    idf = b.net.char_idf
    want = torch.zeros(dims + 2)
    for ch in "红色的球":
        i = tok.encode(ch)[0]
        want[i % dims] += idf[i]
    assert torch.allclose(bag_t[0], F.normalize(want, dim=0), atol=1e-6)
    # characters outside the vocabulary ([UNK]) never match: two unknown characters differ
    with torch.no_grad():
        hu, _ = net.align_tokens(batch["feats"][:1], batch["frame_mask"][:1], b.tag_tensor([["鹦鹉"]]))
        vu = net.video_embed(hu, b.tag_char_tensor([["鹦鹉"]]))
    assert b.tag_char_tensor([["鹦鹉"]])[0, 1, 0] == tok.unk_id
    assert float(b.encode_texts(["鸵鸟"])[0, e:] @ vu[0, e:]) == pytest.approx(0.0, abs=1e-6)
    # a video without tags matches no text exactly, and keeps unit norm (own slot)
    assert torch.allclose(bag_t @ bag_v[2], torch.zeros(2), atol=1e-6)
    assert float(bag_v[2, dims]) == pytest.approx(1.0)
    # the no-tags ablation: no exact match for any video, tags passed or not
    nb = tiny_bundle(use_tags=False, exact_match=w, exact_match_dims=64)
    with torch.no_grad():
        hh, _ = nb.net.align_tokens(batch["feats"], batch["frame_mask"], nb.tag_tensor(tags))
        nv = nb.net.video_embed(hh, nb.tag_char_tensor(tags))
        assert torch.equal(nv, nb.net.video_embed(hh))
        assert torch.allclose(
            nb.encode_texts(["红色的球"])[:, e:] @ nv[:, e:].T, torch.zeros(1, 3), atol=1e-6
        )
    with pytest.raises(ModelError, match="tag characters"):
        net.video_embed(h)  # never silently "no tags"
    with pytest.raises(ConfigError, match="exact_match"):
        tiny_cfg(exact_match=1.0)


def test_copy_mechanism_is_a_distribution_and_decodes_consistently(tmp_path: Path) -> None:
    b, batch = _trained_bundle(steps=10, copy_tags=True)
    net = b.net.eval()
    tags = [TAGS[i % len(TAGS)] for i in range(6)]
    h, m = net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    with torch.no_grad():
        logp, _ = net._start(h, m, "title", batch["tag_ids"], batch["tag_chars"])
        assert torch.allclose(logp.exp().sum(-1), torch.ones(6), atol=1e-5)
        # the training path (log p of the labels) equals the decoding path's full distribution
        source = net._copy_source(net._prefix(h), batch["tag_chars"])
        logits = torch.randn(6, 3, net.vocab.vocab_size)
        states = torch.randn(6, 3, net.gpt.config.n_embd)
        labels = torch.randint(0, net.vocab.vocab_size, (6, 3))
        labels[0, 0] = batch["tag_chars"][0, 1, 0]  # a character the first video can copy
        full = net._copy_mix(logits, states, source)
        assert torch.allclose(
            net._copy_mix(logits, states, source, labels), full.gather(-1, labels[..., None])[..., 0]
        )
        # a video without tags (row 5) gets the plain decoder distribution
        assert torch.allclose(full[5], F.log_softmax(logits[5], -1), atol=1e-6)
    with pytest.raises(ModelError, match="tag characters"):
        b.generate(h, m, "title")
    tid, chars = b.tag_tensor(tags), b.tag_char_tensor(tags)
    for ngram in (0, 2):
        greedy = net.greedy(h, m, "title", 10, ngram, tag_ids=tid, tag_chars=chars)
        assert net.beam_search(h, m, "title", 10, 1, ngram, tag_ids=tid, tag_chars=chars) == greedy
    b.save(tmp_path / "ck")
    c = ALWIG.load(tmp_path / "ck")
    assert c.generate(h, m, "caption", beam_size=2, tags=tags) == b.generate(
        h, m, "caption", beam_size=2, tags=tags
    )


def test_copy_mechanism_copies_tags_never_seen_in_training() -> None:
    """Targets "看<tag>了" with 48 random two-character tags; after training, 12 new tags (never a
    tag in training, so one unknown tag id) are copied exactly: the pointer, not the vocabulary."""
    import random

    rng = random.Random(0)
    chars = sorted(set("".join(TEXTS)))
    train_tags = [["".join(rng.sample(chars, 2))] for _ in range(48)]
    test_tags = [["".join(rng.sample(chars, 2))] for _ in range(12)]
    test_tags = [t for t in test_tags if t not in train_tags]
    b = ALWIG.create(tiny_cfg(copy_tags=True, use_align=False), [*TEXTS, "看了"], train_tags)
    assert all(b.tags.token_to_id.get(t[0]) is None for t in test_tags)

    def batch_of(tags: list[list[str]]) -> dict[str, torch.Tensor]:
        n = len(tags)
        return {
            "feats": torch.zeros(n, 4, FDIM),
            "frame_mask": torch.ones(n, 4, dtype=torch.bool),
            "tag_ids": b.tag_tensor(tags),
            "tag_chars": b.tag_char_tensor(tags),
            "title_seq": b.seq_tensor([f"看{t[0]}了" for t in tags], "title"),
        }

    torch.manual_seed(0)
    train = batch_of(train_tags)
    opt = torch.optim.Adam(b.net.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        b.net(train)["loss"].backward()
        opt.step()
    b.net.eval()
    test = batch_of(test_tags)
    h, m = b.net.align_tokens(test["feats"], test["frame_mask"], test["tag_ids"])
    assert b.generate(h, m, "title", beam_size=1, tags=test_tags) == [f"看{t[0]}了" for t in test_tags]


def test_generation_does_not_depend_on_batch_composition() -> None:
    b, batch = _trained_bundle(steps=10)
    h, m = b.net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    together = b.generate(h, m, "title", beam_size=2)
    alone = [b.generate(h[i : i + 1], m[i : i + 1], "title", beam_size=2)[0] for i in range(6)]
    assert together == alone


# ---------------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    b, batch = _trained_bundle(steps=10)
    b.save(tmp_path / "ck", training={"note": "test"})
    assert read_record(tmp_path / "ck")["training"] == {"note": "test"}
    c = ALWIG.load(tmp_path / "ck")
    for net in (b.net, c.net):
        net.eval()
    with torch.no_grad():
        h1, m1 = b.net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
        h2, m2 = c.net.align_tokens(
            batch["feats"], batch["frame_mask"], c.tag_tensor([TAGS[i] for i in range(6)])
        )
        assert torch.equal(h1, h2) and torch.equal(m1, m2)
        assert torch.equal(b.encode_texts(TEXTS), c.encode_texts(TEXTS))
        assert torch.equal(b.net.video_embed(h1), c.net.video_embed(h2))
    assert b.generate(h1, m1, "caption", beam_size=2) == c.generate(h2, m2, "caption", beam_size=2)
    assert c.tokenizer.tokens == b.tokenizer.tokens and c.tags.tokens == b.tags.tokens


def test_frame_groups_project_each_feature_group_separately(tmp_path: Path) -> None:
    """extensions.frame_groups: each of the encoder's feature groups has its own linear map + LayerNorm
    (the sum of the parts); the groups travel with the checkpoint."""
    from create_bench.features.encoders import FixedEncoder
    from create_bench.models.alwig.extensions import GroupedProjection
    from create_bench.models.alwig.model import ALWIGNet

    proj = GroupedProjection((3, 5), 4)
    x = torch.randn(2, 7, 8)
    want = proj.parts[0](x[..., :3]) + proj.parts[1](x[..., 3:])
    assert torch.allclose(proj(x), want, atol=1e-6)
    y = x.clone()
    y[..., 3:] *= 100.0  # a loud group cannot drown a quiet one: its part stays layer-normed
    assert float(proj.parts[1](y[..., 3:]).std()) < 3.0
    b0 = tiny_bundle()
    with pytest.raises(ModelError, match="do not split"):
        ALWIGNet(tiny_cfg(frame_groups=True), FDIM, b0.net.vocab, feature_groups=(5, 5))

    enc = FixedEncoder()
    assert sum(enc.groups) == enc.dim and len(enc.groups) == 9
    cfg = tiny_cfg(encoder="fixed", feature_set=None, feature_dim=None, frame_groups=True)
    b = ALWIG.create(cfg, TEXTS, TAGS)
    assert b.net.feature_groups == enc.groups
    assert [p[0].in_features for p in b.net.frame_proj.parts] == list(enc.groups)
    feats = enc(torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8))
    mask = torch.ones(2, 4, dtype=torch.bool)
    tags = b.tag_tensor(TAGS[:2])
    b.save(tmp_path / "ck")
    assert read_record(tmp_path / "ck")["feature_groups"] == list(enc.groups)
    c = ALWIG.load(tmp_path / "ck")
    b.net.eval()  # as loaded checkpoints are
    with torch.no_grad():
        assert torch.equal(b.net.align_tokens(feats, mask, tags)[0], c.net.align_tokens(feats, mask, tags)[0])
    # Precomputed features are one group: a linear map and a LayerNorm.
    one = tiny_bundle(frame_groups=True)
    assert one.net.feature_groups == (FDIM,) and len(one.net.frame_proj.parts) == 1


def test_load_rejects_broken_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="config.json missing"):
        ALWIG.load(tmp_path / "nothing")
    b = tiny_bundle()
    b.save(tmp_path / "ck")
    (tmp_path / "ck" / "tags.txt").unlink()
    with pytest.raises(ModelError, match="lacks tags.txt"):
        ALWIG.load(tmp_path / "ck")
    other = tiny_bundle(hidden_size=16)
    other.save(tmp_path / "ck2")
    cfg_path = tmp_path / "ck2" / "config.json"
    cfg_path.write_text(cfg_path.read_text().replace('"hidden_size": 16', '"hidden_size": 32'))
    with pytest.raises(ModelError, match="do not match"):
        ALWIG.load(tmp_path / "ck2")


# ------------------------------------------------------------------------------ pretrained GPT-2
def test_loads_a_tiny_local_chinese_gpt2_directory(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    chars = sorted({c for t in TEXTS for c in t})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]
    gdir = tmp_path / "gpt2-chinese-tiny"
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=24, n_layer=2, n_head=2)
    ).save_pretrained(gdir)
    (gdir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    b = ALWIG.create(tiny_cfg(gpt_path=str(gdir)), TEXTS, TAGS)
    assert b.tokenizer.tokens[: len(vocab)] == vocab and len(b.tokenizer) == len(vocab) + 2
    assert b.net.gpt.config.vocab_size == len(vocab) + 2 and b.net.gpt.config.n_embd == 24
    assert b.tokenizer.eos_id == vocab.index("[SEP]")
    batch = toy_batch(b)
    out = b.net(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    # the pretrained weights were loaded, not re-initialised
    ref = GPT2LMHeadModel.from_pretrained(gdir)
    assert torch.equal(b.net.gpt.transformer.h[0].attn.c_attn.weight, ref.transformer.h[0].attn.c_attn.weight)
    b.save(tmp_path / "ck")
    c = ALWIG.load(tmp_path / "ck")  # reloads without the original directory's config
    b.net.eval()
    h, m = b.net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
    assert b.generate(h, m, "title") == c.generate(h, m, "title")
    with pytest.raises(ConfigError, match="vocab.txt"):
        ALWIG.create(tiny_cfg(gpt_path=str(tmp_path)), TEXTS, TAGS)


def test_too_few_gpt2_positions_is_a_model_error(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gdir = tmp_path / "g"
    GPT2LMHeadModel(GPT2Config(vocab_size=9, n_positions=8, n_embd=8, n_layer=1, n_head=1)).save_pretrained(
        gdir
    )
    (gdir / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d"]) + "\n"
    )
    with pytest.raises(ModelError, match="positions"):
        ALWIG.create(tiny_cfg(gpt_path=str(gdir)), TEXTS, TAGS)


# ------------------------------------------------------------------------------------------ DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp_worker(rank: int, world_size: int, port: int, tmp: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        payload = torch.load(os.path.join(tmp, "payload.pt"), weights_only=False)
        b = ALWIG.create(payload["cfg"], TEXTS, TAGS)
        b.net.load_state_dict(payload["state"])
        net = DDP(b.net)
        out = net(payload["shares"][rank], World())
        out["loss"].backward()
        grads = {k: p.grad.detach().clone() for k, p in b.net.named_parameters() if p.grad is not None}
        torch.save({"grads": grads, "loss": out["loss"].detach()}, os.path.join(tmp, f"grads{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "kinds_per_video,extra",
    [
        (2, {}),
        (1, {}),
        (2, {"copy_tags": True, "tag_lexical": True, "exact_match": 0.3, "frame_groups": True}),
    ],
)
def test_ddp_two_processes_match_single_process_gradients(
    tmp_path: Path, kinds_per_video: int, extra: dict
) -> None:
    """The training path (text_choices -> make_batch -> forward) on 2 gloo ranks, half the batch
    each, gives the gradients of one process on the whole batch."""
    import torch.multiprocessing as mp

    from create_bench.training.alwig.batches import make_batch, text_choices
    from create_bench.training.alwig.features import SplitData

    b = tiny_bundle(gen_kinds_per_video=kinds_per_video, **extra)
    toy = toy_batch(b, n=6)
    caps = [TEXTS[i] + "很快" * (i % 3) for i in range(6)]  # unequal lengths: the token mean must be global
    data = SplitData(
        "toy",
        [f"v{i}" for i in range(6)],
        toy["feats"],
        toy["frame_mask"],
        TAGS,
        [[t] for t in TEXTS],
        [[c] for c in caps],
        TEXTS,
    )
    rows = list(range(6))
    texts = text_choices(data, rows, b.cfg, "finetune", salt=5)
    if kinds_per_video == 1:  # the two ranks get different mixes of title/caption targets
        assert texts["gen_kind"][:3] != texts["gen_kind"][3:]
    full = make_batch(b, data, rows, texts)
    shares = [
        make_batch(b, data, rows[r * 3 : (r + 1) * 3], {k: v[r * 3 : (r + 1) * 3] for k, v in texts.items()})
        for r in range(2)
    ]
    torch.save({"cfg": b.cfg, "state": b.net.state_dict(), "shares": shares}, tmp_path / "payload.pt")
    out = b.net(full)
    out["loss"].backward()
    ref = {k: p.grad for k, p in b.net.named_parameters() if p.grad is not None}
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = torch.load(tmp_path / f"grads{rank}.pt", weights_only=False)["grads"]
        assert set(got) == set(ref)
        for k, g in ref.items():
            diff = float((got[k] - g).abs().max())
            assert diff <= 1e-5 * max(1.0, float(g.abs().max())), (k, diff)
    losses = [float(torch.load(tmp_path / f"grads{r}.pt", weights_only=False)["loss"]) for r in range(2)]
    assert sum(losses) / 2 == pytest.approx(float(out["loss"]), rel=1e-5)


# -------------------------------------------------------------------------------- layering
def test_library_never_imports_training_code() -> None:
    """The model package is library code: training lives in ``create_bench/training/alwig/``."""
    root = Path(__file__).resolve().parents[1] / "create_bench"
    for py in (root / "models" / "alwig").glob("*.py"):
        assert py.name not in ("train.py", "stream.py", "ablate.py"), py  # application code
        src = py.read_text(encoding="utf-8")
        for banned in ("create_bench.training", "alwig.train", "alwig.ablate", "from .train", "from .ablate"):
            assert banned not in src, (py, banned)
        for banned in (
            "create_bench.tasks",
            "create_bench.metrics",
            "create_bench.runner",
            "create_bench.scoring",
        ):
            assert banned not in src, (py, banned)


# ----------------------------------------------------------------------------------------- CUDA
def _cuda_pair() -> tuple[ALWIG, dict, dict, dict]:
    """A trained tiny model's loss and gradients on the CPU, then the model moved to CUDA."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    b, _ = _trained_bundle(steps=10)
    b.net.train()
    batch = toy_batch(b)
    cpu_out = b.net(batch)
    cpu_out["loss"].backward()
    cpu_grads = {n: p.grad.clone() for n, p in b.net.named_parameters() if p.grad is not None}
    b.net.zero_grad(set_to_none=True)
    b.to("cuda")
    return b, batch, {k: float(v.detach()) for k, v in cpu_out.items()}, cpu_grads


@pytest.mark.gpu
def test_cuda_loss_decoding_and_checkpoint_match_cpu(tmp_path: Path) -> None:
    """The same model and batch on CUDA: the losses equal the CPU's within float32 tolerance,
    greedy decoding gives the same texts, and a checkpoint saved from CUDA loads on the CPU."""
    b, batch, cpu_out, _ = _cuda_pair()
    gpu_out = b.net({k: v.to("cuda") for k, v in batch.items()})
    for k in ("loss", "align", "gen"):
        assert float(gpu_out[k].detach()) == pytest.approx(cpu_out[k], rel=1e-4, abs=1e-5), k
    b.net.eval()
    with torch.no_grad():
        h, m = b.net.align_tokens(batch["feats"].cuda(), batch["frame_mask"].cuda(), batch["tag_ids"].cuda())
        on_gpu = b.generate(h, m, "caption", beam_size=1)
    b.save(tmp_path / "ck")
    c = ALWIG.load(tmp_path / "ck")  # CPU
    c.net.eval()
    with torch.no_grad():
        h2, m2 = c.net.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
        assert c.generate(h2, m2, "caption", beam_size=1) == on_gpu


@pytest.mark.gpu
@pytest.mark.xfail(
    reason="open: on an H200 (torch 2.11+cu130, 2026-11-28) the temperature's gradient differed from "
    "the CPU's by 0.22 (CPU -0.37) while the losses agreed to 1e-4; on the CPU the same gradient is "
    "stable to 1e-5 under 1e-3 input noise, so this is not rounding. Not yet explained (issue 6).",
    strict=False,
)
def test_cuda_gradients_match_cpu() -> None:
    """Gradients on CUDA equal the CPU's: per parameter within 1e-4 of the whole gradient's norm
    plus 1e-3 of its own (a nearly-zero gradient has no meaningful relative error of its own)."""
    b, batch, _, cpu_grads = _cuda_pair()
    b.net({k: v.to("cuda") for k, v in batch.items()})["loss"].backward()
    total = torch.cat([g.flatten() for g in cpu_grads.values()]).norm()
    for n, p in b.net.named_parameters():
        if n in cpu_grads:
            ref = cpu_grads[n]
            err = float((p.grad.cpu() - ref).norm())
            assert err <= 1e-4 * float(total) + 1e-3 * float(ref.norm()), (
                n,
                err,
                float(ref.norm()),
                float(total),
            )


def test_extended_configs_are_named_alwig_plus_ext():
    """Results, caches and the board never show ALWIG with additions as plain "alwig"."""
    from create_bench.models.alwig import model_name
    from create_bench.models.alwig.config import ALWIGConfig, Extensions, load_config

    assert model_name(ALWIGConfig()) == "alwig"  # the paper's model
    sample = load_config("sample")
    assert sample.extensions.enabled and model_name(sample) == "alwig+ext"
    assert model_name(sample.replace(extensions=Extensions())) == "alwig"
