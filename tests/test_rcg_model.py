"""RCG library parts without a dataset: pointer/gate mixing, retrieval exclusion, decoding,
checkpoint round trip, config and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from create_bench.errors import ConfigError, ModelError
from create_bench.models.base import ModelContext
from create_bench.models.rcg import RCGModel, RetrievedTitleModel, default_checkpoint
from create_bench.models.rcg.bundle import RCG, Corpus, read_record, top_k
from create_bench.models.rcg.config import RCGConfig, check_dataset, load_config
from create_bench.models.rcg.model import mix_distributions

#: A tiny RCG on precomputed 6-dim features of 3 frames.
TINY = dict(
    frame_config="paper",
    frame_overrides={"feature_dim": 6, "num_frames": 3},
    d_model=16,
    num_heads=2,
    ffn_size=32,
    video_layers=1,
    text_layers=1,
    sentence_layers=1,
    decoder_layers=1,
    embed_dim=8,
    max_text_len=12,
    dropout=0.0,
    k=2,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _corpus() -> dict[str, Corpus]:
    titles = [
        ("a", "红色苹果向左跑"),
        ("b", "蓝色拖鞋跳起来"),
        ("c", "红色苹果向左跑"),
        ("d", "黄色草莓在飞"),
    ]
    captions = [("a", "苹果在厨房"), ("b", "拖鞋在办公室"), ("c", "苹果在果园"), ("d", "草莓在天上")]
    return {"title": Corpus.build(titles), "caption": Corpus.build(captions)}


def _bundle(**kw) -> RCG:
    torch.manual_seed(0)
    return RCG.create(RCGConfig(**{**TINY, **kw}), _corpus(), feature_dim=6)


def _video(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, 6, generator=g), torch.ones(b, 3, dtype=torch.bool)


# ----------------------------------------------------------------------------------- mixing
def test_mixing_sums_to_one_and_closed_gate_is_the_vocab_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    v, k, seq = 11, 3, 5
    p_vocab = torch.softmax(torch.randn(4, v, generator=g), -1)
    attn = torch.softmax(torch.randn(4, k, seq, generator=g), -1)
    ids = torch.randint(0, v, (4, k, seq), generator=g)
    gate = torch.softmax(torch.randn(4, k + 1, generator=g), -1)
    mixed = mix_distributions(p_vocab, attn, ids, gate)
    assert torch.allclose(mixed.sum(-1), torch.ones(4), atol=1e-6)
    assert (mixed >= 0).all()
    closed = torch.zeros(4, k + 1)
    closed[:, 0] = 1.0
    assert torch.allclose(mix_distributions(p_vocab, attn, ids, closed), p_vocab, atol=1e-7)
    # all weight on pointer 2: its attention, summed per id
    only = torch.zeros(4, k + 1)
    only[:, 2] = 1.0
    want = torch.zeros(4, v).scatter_add(-1, ids[:, 1], attn[:, 1])
    assert torch.allclose(mix_distributions(p_vocab, attn, ids, only), want, atol=1e-7)


def test_network_distribution_sums_to_one_and_matches_the_training_loss() -> None:
    bundle = _bundle()
    bundle.net.eval()
    gen = bundle.net.generator
    video, vmask = bundle.net.video_states(*_video(), bundle.tag_tensor([["苹果"], []]))
    sents = bundle.sent_tensor(
        [["红色苹果向左跑", "黄色草莓在飞"], ["蓝色拖鞋跳起来"]]
    )  # row 1: one slot empty
    mem = gen.memory(video, vmask, sents)
    seq = bundle.seq_tensor(["红色苹果", "拖鞋跳"], "title")
    with torch.no_grad():
        logp, attn, gate = gen.sources(gen.decode(seq[:, :-1], mem), mem)
        assert attn is not None and gate is not None
        assert torch.allclose(gate.sum(-1), torch.ones_like(gate[..., 0]), atol=1e-5)
        assert float(gate[1, :, 2].max()) == 0.0  # the missing sentence has no pointer
        full = mix_distributions(logp.exp(), attn, mem.sent_ids[:, None], gate)
        assert torch.allclose(full.sum(-1), torch.ones_like(full[..., 0]), atol=1e-5)
        nll = gen.token_nll(seq[:, :-1], seq[:, 1:], mem)
        labels = seq[:, 1:]
        want = -torch.log(full.gather(-1, labels[..., None]).squeeze(-1)) * (
            labels != bundle.tokenizer.pad_id
        )
        assert torch.allclose(nll, want, atol=1e-4)


def test_generator_only_has_no_pointer() -> None:
    bundle = _bundle(k=0)
    gen = bundle.net.generator
    video, vmask = bundle.net.video_states(*_video(), bundle.tag_tensor([[], []]))
    mem = gen.memory(video, vmask, bundle.sent_tensor([[], []]))
    logp, attn, gate = gen.sources(gen.decode(bundle.seq_tensor(["苹果", "拖鞋"], "title")[:, :-1], mem), mem)
    assert attn is None and gate is None
    assert torch.allclose(logp.exp().sum(-1), torch.ones(logp.shape[:2]), atol=1e-5)


# --------------------------------------------------------------------------------- retrieval
def test_corpus_dedupes_and_records_owners() -> None:
    c = _corpus()["title"]
    assert c.texts == ["红色苹果向左跑", "蓝色拖鞋跳起来", "黄色草莓在飞"]
    assert c.owners[0] == ("a", "c") and c.owned_by("c") == [0] and c.owned_by("zz") == []


def test_top_k_never_returns_an_excluded_column() -> None:
    g = torch.Generator().manual_seed(1)
    sim = torch.randn(20, 9, generator=g)
    exclude = [[int(j) for j in torch.randperm(9, generator=g)[: r % 5]] for r in range(20)]
    for r, row in enumerate(top_k(sim, 9, exclude)):
        assert not set(row) & set(exclude[r])
        assert len(row) == 9 - len(exclude[r])
        assert row == sorted(row, key=lambda j: -float(sim[r, j]))


def test_retriever_never_returns_a_videos_own_sentences() -> None:
    bundle = _bundle()
    bundle.net.eval()
    feats, mask = _video(4)
    video = bundle.video_embed(feats, mask, [[], [], [], []])
    for kind in ("title", "caption"):
        corpus = bundle.corpus[kind]
        got = bundle.retrieve(video, kind, 10, ["a", "b", "c", "d"])
        for vid, sents in zip("abcd", got):
            own = {corpus.texts[i] for i in corpus.owned_by(vid)}
            assert own and not own & set(sents)
            assert len(sents) == len(corpus) - len(own)


# ---------------------------------------------------------------------------------- decoding
def test_greedy_and_beam_decode_within_max_len() -> None:
    bundle = _bundle()
    bundle.net.eval()
    feats, mask = _video()
    sents = [["红色苹果向左跑", "黄色草莓在飞"], ["蓝色拖鞋跳起来", "红色苹果向左跑"]]
    for beam in (1, 3):
        opts = bundle.decode_options("title", beam_size=beam, max_len=6)
        texts, gates = bundle.generate(feats, mask, [[], []], "title", sents, opts)
        assert len(texts) == 2 and all(len(t) <= 6 for t in texts)
        assert all(len(g) == 3 and abs(sum(g) - 1) < 1e-3 for g in gates)


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip(tmp_path: Path) -> None:
    bundle = _bundle()
    bundle.net.set_feature_stats(torch.randn(5, 3, 6) * 3 + 1, torch.ones(5, 3, dtype=torch.bool))
    bundle.net.eval()
    bundle.save(tmp_path / "ck", training={"data": "tiny"})
    again = RCG.load(tmp_path / "ck")
    a, b = bundle.net.state_dict(), again.net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.cfg == bundle.cfg and again.tokenizer.tokens == bundle.tokenizer.tokens
    assert again.corpus["title"].texts == bundle.corpus["title"].texts
    assert again.corpus["title"].owners == bundle.corpus["title"].owners
    feats, mask = _video()
    opts = bundle.decode_options("caption")
    sents = [["苹果在厨房"], ["草莓在天上", "拖鞋在办公室"]]
    assert bundle.generate(feats, mask, [[], []], "caption", sents, opts) == again.generate(
        feats, mask, [[], []], "caption", sents, opts
    )
    assert read_record(tmp_path / "ck")["training"] == {"data": "tiny"}


def test_bad_checkpoints_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no RCG checkpoint .*create-bench train rcg"):
        read_record(tmp_path / "missing")
    other = tmp_path / "alwig"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"format": "alwig-checkpoint"}))
    with pytest.raises(ModelError, match="not an RCG checkpoint"):
        read_record(other)
    _bundle().save(tmp_path / "ck")
    (tmp_path / "ck" / "corpus.json").unlink()
    with pytest.raises(ModelError, match="lacks corpus.json"):
        read_record(tmp_path / "ck")


def test_missing_checkpoint_at_setup_names_the_command(tmp_path: Path) -> None:
    for cls in (RCGModel, RetrievedTitleModel):
        model = cls(checkpoint=str(tmp_path / "nothing"))
        with pytest.raises(ModelError, match="no RCG checkpoint .*create-bench train rcg"):
            model.setup(ModelContext(data_dir=tmp_path, split="test"))
    assert default_checkpoint("data/create-sample") == Path("checkpoints/rcg-create-sample")
    assert default_checkpoint("data/create-sample/") == Path("checkpoints/rcg-create-sample")


def test_sample_config_refuses_another_dataset(tmp_path: Path) -> None:
    data = tmp_path / "other"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"generator": {"name": "create-import"}}))
    with pytest.raises(ConfigError, match="runs only on CREATE-sample"):
        check_dataset(load_config("sample"), data)
    check_dataset(load_config("default"), data)  # precomputed features: any dataset


def test_config_files_and_errors() -> None:
    assert load_config("default") == RCGConfig()
    assert load_config("sample").frame_cfg().encoder == "fixed"
    with pytest.raises(ConfigError, match="unknown key 'kk'; did you mean 'k'"):
        RCGConfig.from_dict({"kk": 3})
    with pytest.raises(ConfigError, match="k must be >= 0"):
        RCGConfig(k=-1)
    with pytest.raises(ConfigError, match="frame_overrides may set only"):
        load_config("sample", frame_overrides={"hidden_size": 3})
