"""A tiny randomly initialised BERT with a Chinese character vocabulary, saved to a directory:
what the BERTScore / ACTEr-r tests encode with (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = (
    "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感"
    "番茄猫狗红色绿蓝黄慢快左右移动跑跳转圈厨房公园为什么竟然居然原来绝了太震惊没想到看完懂"
)
LATIN = ["a", "b", "c", "abc", "##bc", "##c", "ok", "vlog", "1", "2", "3"]
PUNCT = list("？！，。、：；（）…?!,.:;()#@~")


def write_vocab(path: Path) -> list[str]:
    vocab = SPECIAL + list(dict.fromkeys(CHARS)) + LATIN + PUNCT
    path.write_text("\n".join(vocab) + "\n", "utf-8")
    return vocab


def tiny_bert(out: Path, *, layers: int = 4, hidden: int = 32, seed: int = 0) -> Path:
    """Save a random BERT (``layers`` blocks, width ``hidden``) and its fast tokenizer under ``out``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(out / "vocab.txt")
    try:  # transformers >= 5: BertTokenizer is the fast (tokenizers) one and takes the vocabulary
        tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    except TypeError:  # transformers 4
        from transformers import BertTokenizerFast

        tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tok.model_max_length = 128
    tok.save_pretrained(out)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(cfg).eval().save_pretrained(out)
    return out
