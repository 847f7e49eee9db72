"""A randomly initialised BERT with a small Chinese character vocabulary, written to a directory
(layer 3: torch and transformers, like :mod:`create_bench.synthetic.fixed_encoder`).

What the BERTScore/ACTEr-r tests and ``benchmarks/bertscore.py`` encode with, and a way to dry-run
``--text-encoder DIR`` (score, eval, the leaderboard server) without downloading a model::

    python -m create_bench.synthetic.random_bert /tmp/tiny-bert            # 4 layers, width 32
    python -m create_bench.synthetic.random_bert /tmp/base-bert --base     # bert-base-chinese's shape

The directory holds ``config.json``, the weights and a fast tokenizer built from ``vocab.txt``
(:data:`CHARS`: common characters and those of CREATE-sample's titles; anything else is ``[UNK]``).
The weights are random, so its scores measure nothing: they exercise the code path and its speed.
The same ``seed`` and sizes give the same weights on the same torch build.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = (
    "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感"
    "番茄猫狗红色绿蓝黄慢快左右移动跑跳转圈厨房公园为什么竟然居然原来绝了太震惊没想到看完懂"
)
LATIN = ["a", "b", "c", "abc", "##bc", "##c", "ok", "vlog", "1", "2", "3"]
PUNCT = list("？！，。、：；（）…?!,.:;()#@~")
#: Files this module writes (a directory holding only these is a previous output it may replace).
OUTPUT_FILES = frozenset(
    {
        "vocab.txt",
        "config.json",
        "model.safetensors",
        "pytorch_model.bin",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
)


@dataclass(frozen=True)
class BertShape:
    """The sizes of the random BERT (the vocabulary is always :func:`vocabulary`)."""

    layers: int = 4
    hidden: int = 32
    heads: int = 2
    intermediate: int = 64
    max_length: int = 128


#: The tests' encoder: small enough to build and run in a second.
TINY = BertShape()
#: bert-base-chinese's shape (12 blocks, width 768, 12 heads, FFN 3072, 512 positions); its vocabulary
#: (21,128 tokens) is not reproduced, which changes only the embedding table's size, not the speed.
BASE = BertShape(layers=12, hidden=768, heads=12, intermediate=3072, max_length=512)


def vocabulary() -> list[str]:
    """The tokens of ``vocab.txt``, in id order."""
    return SPECIAL + list(dict.fromkeys(CHARS)) + LATIN + PUNCT


def write_vocab(path: Path) -> list[str]:
    vocab = vocabulary()
    path.write_text("\n".join(vocab) + "\n", "utf-8")
    return vocab


def random_bert(out: str | Path, shape: BertShape = TINY, *, seed: int = 0) -> Path:
    """Write a random BERT of ``shape`` and its fast tokenizer to ``out``; returns ``out``.

    ``out`` may be missing, empty, or a previous output of this function (its files are replaced);
    anything else is refused (:class:`~create_bench.errors.OutputError`) before anything is written.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from create_bench.fsutil import check_output_dir

    out = Path(out)
    check_output_dir(out, owns=lambda p: p.name in OUTPUT_FILES, what="random_bert")
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(out / "vocab.txt")
    try:  # transformers >= 5: BertTokenizer is the fast (tokenizers) one and takes the vocabulary
        tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    except TypeError:  # transformers 4
        from transformers import BertTokenizerFast  # type: ignore[attr-defined]

        tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = shape.max_length
    tok.save_pretrained(out)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_length,
    )
    torch.manual_seed(seed)
    BertModel(cfg).eval().save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m create_bench.synthetic.random_bert",
        description="Write a randomly initialised BERT (+ fast tokenizer) to a directory, for dry runs "
        "of --text-encoder DIR without downloading a model. Its scores measure nothing.",
    )
    p.add_argument("out", help="directory to write (missing, empty, or a previous output)")
    p.add_argument("--base", action="store_true", help="bert-base-chinese's shape (default: tiny)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = p.parse_args(argv)
    shape = BASE if args.base else TINY
    path = random_bert(args.out, shape, seed=args.seed)
    print(f"wrote a random BERT {asdict(shape)} to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
