"""Chinese annotations for CREATE-sample (layer 2), written in the style of CREATE-210K.

Every sample video has latent attributes (:class:`Latent`): a category (which fixes the scene:
background pattern and palette), a main object (which fixes the rendered shape), a colour, a
motion, a count and a speed. ``synthetic.video`` renders exactly these attributes, and every text
here is generated from them, so a model can learn video <-> text from the data:

* ``ann_caption``: objective, always names the scene, the colour, the object and the motion
  ("厨房里，两个红色的番茄慢慢地向左移动").
* ``ann_title``: attractive (questions, exclamations, suspense hooks), always names the object
  ("番茄为什么会往左跑？看完你就懂了").
* ``raw_title``: noisy uploader text: hashtags, emojis, @mentions, truncation, sometimes unrelated.
* ``tags``: 2-8 free-form tags drawn from category, object, colour and motion words, plus shared
  and rare ones.

Validation/test videos get 10 titles and 10 captions each, every one from a different template
(paraphrases of the same content); train videos get one of each.

All randomness comes from the ``numpy.random.Generator`` passed in, so the text is a pure
function of (generator state, latent attributes). The tables in ``synthetic.tables`` and
``synthetic.vocabulary`` (re-exported here) are part of the sample's definition: changing them
changes the data, so bump ``SAMPLE_VERSION`` in ``sample.py``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from create_bench.errors import ConfigError
from create_bench.synthetic.tables import (  # noqa: F401  (re-exported)
    CATEGORIES,
    CATEGORY_NAMES,
    COLOUR_BY_KEY,
    COLOUR_CHARS,
    COLOURS,
    COUNT_WORDS,
    MOTION_BY_KEY,
    MOTIONS,
    OBJECTS,
    PATTERNS,
    RGB,
    SHAPES,
    SPEED_TAGS,
    SPEEDS,
    Category,
    Colour,
    Motion,
    ObjectKind,
)
from create_bench.synthetic.vocabulary import (  # noqa: F401  (re-exported)
    ADJECTIVES,
    CAPTION_TEMPLATES,
    EMOJIS,
    HANDLES,
    NICK_PARTS,
    RARE_TAGS,
    RAW_BASES,
    RAW_SUFFIXES,
    SHARED_TAGS,
    TITLE_TEMPLATES,
    UNRELATED,
)

# --------------------------------------------------------------------------------------------
# Latent attributes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latent:
    """What a sample video shows; the renderer draws it and every text describes it."""

    category: int
    obj: str
    colour: str
    motion: str
    count: int
    speed: str

    @property
    def cat(self) -> Category:
        return CATEGORIES[self.category]

    @property
    def object(self) -> ObjectKind:
        return OBJECTS[self.obj]


_CAT_P = np.array([c.weight for c in CATEGORIES], dtype=np.float64)
_CAT_P /= _CAT_P.sum()


def draw_latent(rng: np.random.Generator) -> Latent:
    """Draw a video's latent attributes (category by CREATE-like imbalanced frequencies)."""
    ci = int(rng.choice(len(CATEGORIES), p=_CAT_P))
    cat = CATEGORIES[ci]
    return Latent(
        category=ci,
        obj=cat.objects[int(rng.integers(len(cat.objects)))],
        colour=COLOURS[int(rng.integers(len(COLOURS)))].key,
        motion=MOTIONS[int(rng.integers(len(MOTIONS)))].key,
        count=int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15])),
        speed="slow" if rng.random() < 0.5 else "fast",
    )


_VID_ALPHABET = np.array(list(string.ascii_letters + string.digits))


def make_vid(rng: np.random.Generator) -> str:
    """A CREATE-looking video id: 'v' + 11 random alphanumerics."""
    return "v" + "".join(_VID_ALPHABET[rng.integers(len(_VID_ALPHABET), size=11)])


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, seq: tuple[str, ...] | list[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _slots(rng: np.random.Generator, lat: Latent) -> dict[str, str]:
    """Fresh synonym choices for one sentence."""
    obj, cat = lat.object, lat.cat
    noun, suffix = cat.scenes[int(rng.integers(len(cat.scenes)))]
    colour = _pick(rng, COLOUR_BY_KEY[lat.colour].names)
    name = _pick(rng, obj.names)
    num = COUNT_WORDS[lat.count]
    # Two noun-phrase forms: 两个红色的番茄 / 两个红色番茄.
    np_ = f"{num}{obj.measure}{colour}{'的' if rng.random() < 0.6 else ''}{name}"
    speed = _pick(rng, SPEEDS[lat.speed]) if rng.random() < 0.8 else ""
    return {
        "obj": name,
        "mw": obj.measure,
        "num": num,
        "colour": colour,
        "np": np_,
        "scene": noun + suffix,
        "place": noun,
        "motion": _pick(rng, MOTION_BY_KEY[lat.motion].phrases),
        "speed": speed,
        "pron": "它" if lat.count == 1 else "它们",
        "total": f"只有一{obj.measure}" if lat.count == 1 else f"一共有{num}{obj.measure}",
        "cat": cat.name,
        "act": _pick(rng, MOTION_BY_KEY[lat.motion].short),
        "adj": _pick(rng, ADJECTIVES),
        "k": str(int(rng.integers(1, 100))),
    }


def _texts(rng: np.random.Generator, lat: Latent, templates: tuple[str, ...], n: int) -> list[str]:
    """``n`` texts, each from a different template (so they are paraphrases, never copies)."""
    if n > len(templates):
        raise ConfigError(f"asked for {n} texts but only {len(templates)} templates exist")
    order = rng.permutation(len(templates))[:n]
    return [templates[int(t)].format(**_slots(rng, lat)) for t in order]


def make_captions(rng: np.random.Generator, lat: Latent, n: int = 1) -> list[str]:
    """``n`` objective captions (distinct templates) naming scene, colour, object and motion."""
    return _texts(rng, lat, CAPTION_TEMPLATES, n)


def make_titles(rng: np.random.Generator, lat: Latent, n: int = 1) -> list[str]:
    """``n`` attractive titles (distinct templates), each naming the object."""
    return _texts(rng, lat, TITLE_TEMPLATES, n)


def make_tags(rng: np.random.Generator, lat: Latent) -> list[str]:
    """2-8 distinct free-form tags: category first, then object/colour/motion/shared/rare words."""
    cat, obj = lat.cat, lat.object
    motion = MOTION_BY_KEY[lat.motion]
    colour = COLOUR_BY_KEY[lat.colour]
    n = int(rng.integers(2, 9))
    first = cat.name if rng.random() < 0.7 else _pick(rng, cat.tags)
    pools: list[tuple[float, tuple[str, ...]]] = [
        (3.0, cat.tags),
        (2.5, obj.names),
        (1.5, (colour.names[0], f"{colour.names[0]}系")),
        (1.5, motion.tags),
        (0.6, SPEED_TAGS[lat.speed]),
        (2.0, SHARED_TAGS),
        (0.5, RARE_TAGS),
        (0.4, (f"{obj.key}控", f"{colour.names[0][0]}{obj.key}", f"{cat.name}博主")),
    ]
    weights = np.array([w for w, _ in pools])
    weights /= weights.sum()
    tags = [first]
    for _ in range(60):  # bounded: the pools hold far more than 8 distinct words
        if len(tags) >= n:
            break
        pool = pools[int(rng.choice(len(pools), p=weights))][1]
        tag = _pick(rng, pool)
        if tag not in tags:
            tags.append(tag)
    return tags


def _nick(rng: np.random.Generator) -> str:
    if rng.random() < 0.3:
        return _pick(rng, HANDLES)
    name = "".join(_pick(rng, NICK_PARTS) for _ in range(int(rng.integers(2, 4))))
    return name + (str(int(rng.integers(10, 10000))) if rng.random() < 0.4 else "")


def make_raw_title(rng: np.random.Generator, lat: Latent, tags: list[str]) -> str:
    """A noisy uploader title: hashtags, emojis, @mentions, truncation; sometimes unrelated."""
    s = _slots(rng, lat)
    parts: list[str] = []
    r = rng.random()
    if r < 0.15:
        parts.append(_pick(rng, UNRELATED).format(**s))
    elif r < 0.25:
        pass  # hashtags only
    else:
        parts.append(_pick(rng, RAW_BASES).format(**s))
    if rng.random() < 0.45:
        parts.append("".join(_pick(rng, EMOJIS) for _ in range(int(rng.integers(1, 4)))))
    if not parts or rng.random() < 0.65:
        k = int(rng.integers(1, min(4, len(tags)) + 1))
        chosen = [tags[int(i)] for i in rng.permutation(len(tags))[:k]]
        parts.append(" ".join(f"#{t}" for t in chosen))
    if rng.random() < 0.2:
        parts.append(f"@{_nick(rng)}")
    if rng.random() < 0.15:
        parts.append(_pick(rng, RAW_SUFFIXES))
    sep = " " if rng.random() < 0.7 else ""
    text = sep.join(p for p in parts if p)
    if len(text) > 8 and rng.random() < 0.15:  # cut off like a clipped upload title
        text = text[: int(rng.integers(5, len(text)))].rstrip() + ("…" if rng.random() < 0.5 else "...")
    return text


@dataclass(frozen=True)
class Annotation:
    titles: list[str]
    captions: list[str]
    raw_title: str
    tags: list[str]


def annotate(rng: np.random.Generator, lat: Latent, n_refs: int) -> Annotation:
    """All text of one video; ``n_refs`` titles and captions (0 for pre-training rows)."""
    titles = make_titles(rng, lat, n_refs) if n_refs else []
    captions = make_captions(rng, lat, n_refs) if n_refs else []
    tags = make_tags(rng, lat)
    return Annotation(titles, captions, make_raw_title(rng, lat, tags), tags)
