"""Dataset statistics and data cards: the JSON against an independent recount of the shards, the
plots and their CJK font, the committed CREATE-sample statistics, and HF loading without warnings."""

from __future__ import annotations

import gc
import json
import logging
import math
import unicodedata
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from create_bench.data import stats as st
from create_bench.errors import BackendUnavailable, ConfigError, DataError, ManifestError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "data_cards" / "create-sample" / "stats.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_stats(tiny_dataset: Path) -> dict:
    return st.compute_stats(tiny_dataset)


def _shard_rows(ds: Path, split: str) -> list[dict]:
    """Rows of a split read straight from the Parquet files (not through create_bench's reader)."""
    files = sorted((ds / "data").glob(f"{split}-*.parquet"))
    assert files
    cols = [c for c in pq.read_schema(files[0]).names if c != "video"]
    rows: list[dict] = []
    for f in files:
        rows += pq.read_table(f, columns=cols).to_pylist()
    return rows


def _chars(text: str) -> int:
    return sum(1 for c in unicodedata.normalize("NFKC", text) if not c.isspace())


# -- the JSON matches the shards --------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "validation", "test", "pretrain"])
def test_stats_match_shards(tiny_dataset, tiny_stats, split):
    rows = _shard_rows(tiny_dataset, split)
    s = tiny_stats["splits"][split]
    assert s["videos"] == len(rows)
    assert s["titles"] == sum(len(r["titles"]) for r in rows)
    assert s["captions"] == sum(len(r["captions"]) for r in rows)
    assert s["raw_titles"] == sum(1 for r in rows if r["raw_title"])
    tags = Counter(t for r in rows for t in r["tags"])
    assert s["tags"]["unique"] == len(tags)
    assert s["tags"]["total"] == sum(tags.values())
    per_video = [len(r["tags"]) for r in rows]
    assert s["tags"]["per_video"]["mean"] == pytest.approx(np.mean(per_video), abs=1e-4)
    assert s["tags"]["per_video"]["median"] == pytest.approx(np.median(per_video), abs=1e-4)
    assert s["tags"]["per_video"]["max"] == max(per_video)
    assert sum(s["tags"]["per_video"]["histogram"]["counts"]) == len(rows)
    assert s["tags"]["top"][0][1] == max(tags.values())
    cats = Counter(r["category"] for r in rows)
    assert {c["id"]: c["videos"] for c in s["categories"] if c["videos"]} == dict(cats)
    names = {r["category"]: r["category_name"] for r in rows}
    for c in s["categories"]:
        if c["id"] in names and c["id"] >= 0:
            assert c["name"] == names[c["id"]]
    durations = [r["duration"] for r in rows]
    assert s["video"]["duration"]["mean"] == pytest.approx(np.mean(durations), abs=1e-4)
    assert s["video"]["duration"]["min"] == pytest.approx(min(durations), abs=1e-4)
    assert s["video"]["num_frames"]["max"] == max(r["num_frames"] for r in rows)
    res = Counter(f"{r['width']}x{r['height']}" for r in rows)
    assert dict(map(tuple, s["video"]["resolutions"])) == dict(res.most_common(st.TOP_K))
    assert s["video"]["distinct_resolutions"] == len(res)
    assert sum(s["video"]["orientation"].values()) == len(rows)
    if split == "pretrain":
        assert s["titles"] == s["captions"] == 0
        assert s["text"]["title"] == {"texts": 0, "videos_with_text": 0}
        assert [c for c in s["categories"] if c["videos"]] == [
            {"id": -1, "name": st.NO_CATEGORY, "videos": len(rows)}
        ]


@pytest.mark.parametrize("split", ["train", "test"])
def test_text_lengths_vocabulary_and_overlap_match_a_naive_recount(tiny_dataset, tiny_stats, split):
    from create_bench.text import get_tokenizer

    tok = get_tokenizer("jieba")
    rows = _shard_rows(tiny_dataset, split)
    s = tiny_stats["splits"][split]
    for kind, col in (("title", "titles"), ("caption", "captions")):
        texts = [t for r in rows for t in r[col]]
        t = s["text"][kind]
        assert t["texts"] == len(texts)
        assert t["chars"]["mean"] == pytest.approx(np.mean([_chars(x) for x in texts]), abs=1e-4)
        assert t["chars"]["max"] == max(_chars(x) for x in texts)
        words = [tok(x) for x in texts]
        assert t["words"]["mean"] == pytest.approx(np.mean([len(w) for w in words]), abs=1e-4)
        assert t["words"]["p95"] == pytest.approx(np.percentile([len(w) for w in words], 95), abs=1e-4)
        assert t["vocabulary"]["words"] == len({w for ws in words for w in ws})
        assert t["per_video"]["max"] == (1 if split == "train" else 10)
    # overlap: per video, share of the title word set found in the caption word set
    shares, inter, total = [], 0, 0
    for r in rows:
        tw = {w for x in r["titles"] for w in tok(x)}
        cw = {w for x in r["captions"] for w in tok(x)}
        shares.append(len(tw & cw) / len(tw))
        inter, total = inter + len(tw & cw), total + len(tw)
    ov = s["overlap"]["title_words_in_captions"]
    assert ov["videos"] == len(rows)
    assert ov["macro"] == pytest.approx(np.mean(shares), abs=1e-4)
    assert ov["micro"] == pytest.approx(inter / total, abs=1e-4)


@pytest.mark.parametrize("split", ["train", "test"])
def test_pos_statistics_match_a_naive_recount(tiny_dataset, tiny_stats, split):
    import jieba.posseg

    from create_bench.text import is_punct_or_symbol, normalize

    rows = _shard_rows(tiny_dataset, split)
    for kind, col in (("title", "titles"), ("caption", "captions")):
        counts: dict[str, Counter] = {c: Counter() for c in st.POS_CLASSES}
        n_tokens = 0
        for r in rows:
            for text in r[col]:
                for p in jieba.posseg.cut(normalize(text)):
                    if not p.word.strip() or is_punct_or_symbol(p.word):
                        continue
                    n_tokens += 1
                    for cls, prefix in st.POS_CLASSES.items():
                        if p.flag.startswith(prefix):
                            counts[cls][p.word] += 1
        pos = tiny_stats["splits"][split]["text"][kind]["pos"]
        assert pos["all_tokens"] == n_tokens
        assert pos["noun"]["tokens"] > 0 and pos["verb"]["tokens"] > 0
        for cls, c in counts.items():
            assert pos[cls]["tokens"] == sum(c.values())
            assert pos[cls]["distinct"] == len(c)
            want = sorted(c.items(), key=lambda wc: (-wc[1], wc[0]))[: st.TOP_K]
            assert [tuple(x) for x in pos[cls]["top"]] == want
            assert pos[cls]["share"] == pytest.approx(sum(c.values()) / n_tokens, abs=1e-4)


def test_deterministic_sorted_and_rounded(tiny_dataset, tiny_stats, tmp_path):
    again = st.compute_stats(tiny_dataset)
    assert again == tiny_stats
    out = st.write_stats(tiny_dataset, tmp_path / "card", plots=False)
    text = (tmp_path / "card" / "stats.json").read_text("utf-8")
    assert json.loads(text) == tiny_stats == {k: v for k, v in out.items() if k != "files"}
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=2, sort_keys=True) + "\n"

    def floats(x):
        if isinstance(x, float):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from floats(v)
        elif isinstance(x, list):
            for v in x:
                yield from floats(v)

    assert all(round(f, st.DIGITS) == f and math.isfinite(f) for f in floats(tiny_stats))
    assert tiny_stats["stats_version"] == st.STATS_VERSION
    assert tiny_stats["tokenizer"].startswith("jieba-0.42.1")


def test_histograms_share_bins_across_splits(tiny_stats):
    edges = {
        tuple(s["text"]["raw_title"]["chars"]["histogram"]["edges"]) for s in tiny_stats["splits"].values()
    }
    assert len(edges) == 1
    edges = {tuple(s["video"]["duration"]["histogram"]["edges"]) for s in tiny_stats["splits"].values()}
    assert len(edges) == 1


def test_max_rows_and_splits(tiny_dataset):
    s = st.compute_stats(tiny_dataset, splits=["test"], max_rows=5, pos=False)
    assert list(s["splits"]) == ["test"]
    assert s["splits"]["test"]["videos"] == 5 and s["max_rows"] == 5
    assert "pos" not in s["splits"]["test"]["text"]["title"]
    assert s["pos_tagger"] is None
    with pytest.raises(ConfigError):
        st.compute_stats(tiny_dataset, max_rows=0)


def test_bad_input_is_a_typed_error(tiny_dataset, tmp_path):
    with pytest.raises(ManifestError, match="manifest.json"):
        st.compute_stats(tmp_path / "nothing")
    with pytest.raises(DataError, match="no split 'tset'"):
        st.compute_stats(tiny_dataset, splits=["tset"])


def test_reads_no_video_bytes(tiny_dataset, monkeypatch):
    seen = []
    real = st.compute.iter_batches

    def spy(path, split, columns=None, **kw):
        seen.append(columns)
        return real(path, split, columns, **kw)

    monkeypatch.setattr(st.compute, "iter_batches", spy)
    st.compute_stats(tiny_dataset, splits=["validation"], pos=False)
    assert seen and all(cols is not None and "video" not in cols for cols in seen)


def test_helpers_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 3.0, size=1001)
    d = st.distribution(x, integer=False)
    assert d["mean"] == pytest.approx(x.mean(), abs=1e-4)
    assert d["std"] == pytest.approx(x.std(), abs=1e-4)
    assert d["median"] == pytest.approx(np.median(x), abs=1e-4)
    assert d["p95"] == pytest.approx(np.percentile(x, 95), abs=1e-4)
    h = d["histogram"]
    assert sum(h["counts"]) == x.size and len(h["edges"]) == len(h["counts"]) + 1 <= 41
    assert h["edges"][0] <= x.min() and h["edges"][-1] > x.max()
    ref, _ = np.histogram(x, bins=np.asarray(h["edges"]))
    assert h["counts"] == ref.tolist()
    ints = rng.integers(3, 200, size=500)
    hi = st.histogram(ints, integer=True)
    assert all(isinstance(e, int) for e in hi["edges"])
    assert hi["counts"] == np.histogram(ints, bins=np.asarray(hi["edges"]))[0].tolist()
    assert st.histogram([5, 5, 5], integer=True) == {"edges": [5, 6], "counts": [3]}
    assert st.distribution([], integer=True) == {"count": 0}


# -- plots and the CJK font -------------------------------------------------------------------


def test_plots_written_in_a_cjk_font(tiny_dataset, tiny_stats, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager as fm
    from matplotlib.ft2font import FT2Font

    gc.collect()  # objects of earlier tests are not finalised (and do not warn) inside the block
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would warn (and be drawn as a box)
        warnings.simplefilter("ignore", ResourceWarning)  # a collection on the way is not the plots'
        paths = st.plot_stats(tiny_stats, tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        ["categories.png", "text_lengths.png", "tags_per_video.png", "video.png"]
        + [f"pos_{s}.png" for s in ("train", "validation", "test")]
    )
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000
    # the font matplotlib resolves for the plots' family covers every Chinese label we draw
    font = st.find_cjk_font()
    with matplotlib.rc_context({"font.family": [font.name, "DejaVu Sans"]}):
        resolved = fm.findfont(fm.FontProperties(family=matplotlib.rcParams["font.family"]))
    cmap = FT2Font(resolved).get_charmap()
    labels = "".join(c["name"] for c in tiny_stats["splits"]["train"]["categories"])
    labels += "".join(w for w, _ in tiny_stats["splits"]["test"]["text"]["title"]["pos"]["noun"]["top"])
    labels += "类别分布视频占比词性统计名词动词形容词"
    missing = {c for c in labels if not c.isspace() and ord(c) not in cmap}
    assert not missing, f"{resolved} lacks {missing}"
    assert "DejaVu" not in Path(resolved).name


def test_same_stats_give_identical_pngs(tiny_stats, tmp_path):
    one = {**tiny_stats, "splits": {"test": tiny_stats["splits"]["test"]}}
    a = st.plot_stats(one, tmp_path / "a")
    b = st.plot_stats(one, tmp_path / "b")
    assert len(a) == 5
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_no_cjk_font_is_a_clear_error(monkeypatch, tmp_path, tiny_stats):
    from matplotlib import font_manager as fm

    st.find_cjk_font.cache_clear()
    latin = [e for e in fm.fontManager.ttflist if "DejaVu" in e.name]
    monkeypatch.setattr(fm.fontManager, "ttflist", latin)
    monkeypatch.setattr(st.plots, "_fontconfig_cjk_files", lambda: [])
    try:
        with pytest.raises(BackendUnavailable, match="fonts-wqy-microhei"):
            st.find_cjk_font()
        with pytest.raises(BackendUnavailable, match="no CJK font"):
            st.plot_stats(tiny_stats, tmp_path)
        assert not list(tmp_path.iterdir())
    finally:
        st.find_cjk_font.cache_clear()


def test_a_label_the_font_lacks_is_an_error(tiny_stats, tmp_path):
    import copy

    bad = copy.deepcopy(tiny_stats)
    bad["splits"]["train"]["categories"][0]["name"] = "\U0001fae8\U0001fae8"  # not in a CJK text font
    with pytest.raises(BackendUnavailable, match="lacks glyphs"):
        st.plot_stats(bad, tmp_path)
    assert not (tmp_path / "categories.png").exists()


# -- the command --------------------------------------------------------------------------------


def test_cli_stats(tiny_dataset, tmp_path, capsys):
    from create_bench.cli import main

    out = tmp_path / "card"
    assert main(["stats", str(tiny_dataset), "--out", str(out), "--no-pos"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert any(line.startswith("test ") for line in lines)
    assert "videos" in lines[1] and "uniq tags" in lines[1]
    data = json.loads((out / "stats.json").read_text("utf-8"))
    test_row = next(line for line in lines if line.startswith("test "))
    assert f"{data['splits']['test']['videos']}" in test_row.split()
    assert (out / "categories.png").is_file()
    assert main(["stats", str(tmp_path / "missing"), "--out", str(out)]) != 0


# -- HF loading --------------------------------------------------------------------------------


def test_hf_load_dataset_sample_without_warnings(tiny_dataset, caplog):
    import datasets

    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        dd = datasets.load_dataset(str(tiny_dataset))
        pre = datasets.load_dataset(str(tiny_dataset), "pretrain")
        streamed = datasets.load_dataset(str(tiny_dataset), split="validation", streaming=True)
        vids = [r["vid"] for r in streamed]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert set(dd) == {"train", "validation", "test"}
    manifest = json.loads((tiny_dataset / "manifest.json").read_text("utf-8"))
    for split in ("train", "validation", "test"):
        assert dd[split].num_rows == manifest["splits"][split]
    assert pre["train"].num_rows == manifest["splits"]["pretrain"]
    assert len(vids) == manifest["splits"]["validation"]
    assert dd["test"].features["category"].names == manifest["categories"]
    assert len(dd["test"][0]["titles"]) == 10
    assert dd["train"].features["video"].decode is False


# -- the committed CREATE-sample statistics ------------------------------------------------------

#: Keys that depend on the machine rather than on the data: none. The fingerprint hashes the
#: content (not the Parquet bytes) and the encoder string names the PyAV build pinned in pyproject.
VOLATILE: tuple[tuple[str, ...], ...] = ()


def _drop_volatile(stats: dict) -> dict:
    stats = json.loads(json.dumps(stats))
    for path in VOLATILE:
        d = stats
        for k in path[:-1]:
            d = d.get(k, {})
        d.pop(path[-1], None)
    return stats


def _default_sample() -> Path:
    """data/create-sample (what `make sample` writes), generated when missing or not the default."""
    from create_bench.synthetic.sample import DEFAULT_SIZES, SAMPLE_VERSION, generate_sample

    ds = ROOT / "data" / "create-sample"
    gen = {}
    if (ds / "manifest.json").is_file():
        gen = json.loads((ds / "manifest.json").read_text("utf-8")).get("generator", {})
    want = {"version": SAMPLE_VERSION, "seed": 0, "videos": dict(DEFAULT_SIZES)}
    if {k: gen.get(k) for k in want} != want:
        generate_sample(ds, seed=0, workers=2)
    return ds


@pytest.mark.slow
def test_committed_sample_stats_match_a_regenerated_sample():
    ds = _default_sample()
    fresh = st.compute_stats(ds)
    committed = json.loads(COMMITTED.read_text("utf-8"))
    a, b = _drop_volatile(fresh), _drop_volatile(committed)
    if a != b:
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        splits = [s for s in a.get("splits", {}) if a["splits"][s] != b.get("splits", {}).get(s)]
        pytest.fail(
            f"{COMMITTED} is stale (differs in {diff}, splits {splits}); "
            "regenerate it with `make stats` and commit data_cards/create-sample/"
        )
    for name in ("categories.png", "text_lengths.png", "tags_per_video.png", "video.png", "pos_test.png"):
        assert (COMMITTED.parent / name).read_bytes()[:8] == PNG_MAGIC


# -- the data cards -------------------------------------------------------------------------------

CARDS = ROOT / "data_cards"


def _front_matter(path: Path) -> dict:
    import yaml

    text = path.read_text("utf-8")
    assert text.startswith("---\n"), path
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.mark.parametrize("name", ["create-210k", "create-3m", "create-10m", "create-sample"])
def test_card_front_matter_and_sections(name):
    from huggingface_hub import DatasetCardData

    path = CARDS / f"{name}.md"
    meta = _front_matter(path)
    DatasetCardData(**meta)  # the Hub's own metadata class accepts it
    assert meta["language"] == ["zh"]
    assert meta["license"] in ({"apache-2.0"} if name == "create-sample" else {"other"})
    if meta["license"] == "other":
        assert meta["license_name"] and meta["license_link"].startswith("https://")
    assert meta["task_categories"] and meta["size_categories"] and meta["configs"]
    text = path.read_text("utf-8")
    for section in ("## Summary", "## Fields", "## Citation", "arXiv:2203.16763"):
        assert section in text, (name, section)
    assert "doi" not in text.lower()


def test_card_numbers():
    card = (CARDS / "create-210k.md").read_text("utf-8")
    for number in ("210,493", "810", "5,000", "15,527", "3,570", "1,191", "537,186"):
        assert number in card
    assert 210_493 * 2 + (810 + 5_000) * 20 == 537_186
    assert "45,277" in (CARDS / "create-3m.md").read_text("utf-8")
    assert "53,044" in (CARDS / "create-10m.md").read_text("utf-8")
    for name in ("create-210k", "create-3m", "create-10m"):
        text = (CARDS / f"{name}.md").read_text("utf-8")
        assert "create-bench build" in text and "e-mail" in text
        assert "## Known limitations and biases" in text
    assert "## Evaluation protocol" in card and "ties:expected" in card


@pytest.mark.parametrize(
    ("card", "config", "split_files"),
    [
        ("create-210k", None, {"train": "train", "validation": "validation", "test": "test"}),
        ("create-sample", None, {"train": "train", "validation": "validation", "test": "test"}),
        ("create-sample", "pretrain", {"train": "pretrain"}),
        ("create-3m", "pretrain-3m", {"train": "pretrain"}),
        ("create-10m", "pretrain-10m", {"train": "pretrain"}),
    ],
)
def test_card_configs_load_with_datasets_without_warnings(
    tiny_dataset, tmp_path, caplog, card, config, split_files
):
    """A built dataset whose README is the card loads through the card's `configs:` block."""
    import shutil

    import datasets

    ds = tmp_path / "ds"
    (ds / "data").mkdir(parents=True)
    meta = _front_matter(CARDS / f"{card}.md")
    cfg = next(c for c in meta["configs"] if c["config_name"] == (config or "default"))
    prefix = {e["split"]: e["path"].split("/")[1].split("-*")[0] for e in cfg["data_files"]}
    if card == "create-sample":  # datasets resolves every config of the card: copy all shards
        for f in (tiny_dataset / "data").glob("*.parquet"):
            shutil.copy(f, ds / "data" / f.name)
    else:
        for split, source in split_files.items():
            for f in sorted((tiny_dataset / "data").glob(f"{source}-*.parquet")):
                shutil.copy(f, ds / "data" / f.name.replace(source, prefix[split], 1))
    shutil.copy(CARDS / f"{card}.md", ds / "README.md")
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        dd = datasets.load_dataset(str(ds), config)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    manifest = json.loads((tiny_dataset / "manifest.json").read_text("utf-8"))
    assert {s: dd[s].num_rows for s in dd} == {s: manifest["splits"][src] for s, src in split_files.items()}


def test_committed_sample_card_block_matches_committed_stats():
    committed = json.loads(COMMITTED.read_text("utf-8"))
    text = (CARDS / "create-sample.md").read_text("utf-8")
    block = text[text.index(st.CARD_BEGIN) : text.index(st.CARD_END) + len(st.CARD_END)]
    assert block == st.card_markdown(committed, "create-sample")
    for line in block.splitlines():
        if line.startswith("!["):
            assert (CARDS / line.split("](")[1].rstrip(")")).is_file(), line


def test_update_card(tmp_path, tiny_stats):
    card = tmp_path / "c.md"
    card.write_text(f"# t\n\n{st.CARD_BEGIN}\nold\n{st.CARD_END}\n\ntail\n", "utf-8")
    assert st.update_card(card, tiny_stats, None) is True
    text = card.read_text("utf-8")
    assert text.startswith("# t\n\n") and text.endswith("\n\ntail\n") and "old" not in text
    assert f"| test | {tiny_stats['splits']['test']['videos']} |" in text
    assert st.update_card(card, tiny_stats, None) is False
    (tmp_path / "bad.md").write_text("no markers", "utf-8")
    with pytest.raises(DataError, match="statistics block"):
        st.update_card(tmp_path / "bad.md", tiny_stats, None)


def test_layering_no_heavy_or_upper_layer_imports():
    """data/stats/ is layer 2: importing it pulls in no model/task/runner code, torch or matplotlib
    (matplotlib is imported only when plotting)."""
    import subprocess
    import sys

    code = (
        "import sys, create_bench.data.stats\n"
        "bad = ('torch', 'matplotlib', 'create_bench.models', 'create_bench.tasks', 'create_bench.runner',"
        " 'create_bench.loader', 'create_bench.metrics')\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
