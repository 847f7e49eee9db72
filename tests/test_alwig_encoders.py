"""ALWIG frozen frame encoders: the fixed hand-made encoder and local CLIP checkpoints."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from create_bench.errors import BackendUnavailable, ConfigError, ModelError
from create_bench.features.encoders import (
    SHAPE_DIM,
    CLIPEncoder,
    FixedEncoder,
    build_encoder,
    connected_components,
    shape_descriptors,
)


def _clip(
    motion: str, colour=(222, 30, 36), shape: str = "square", n: int = 4, width: int = 96, height: int = 64
) -> torch.Tensor:
    """n frames (uniform-center) of a rendered CREATE-sample scene: uint8 [1, n, height, width, 3]."""
    from create_bench.synthetic.video import VideoSpec, render_frames

    spec = VideoSpec(
        width=width,
        height=height,
        fps=Fraction(15),
        num_frames=45,
        rotation=0,
        pattern="checker",
        palette=((200, 165, 120), (165, 125, 90)),
        shape=shape,
        colour=colour,
        motion=motion,
        count=1,
        speed="slow",
        seed=3,
    )
    frames = np.stack(list(render_frames(spec)))
    idx = [(2 * i + 1) * spec.num_frames // (2 * n) for i in range(n)]
    return torch.from_numpy(frames[idx])[None]


def test_fixed_encoder_shape_determinism_and_size_independence() -> None:
    enc = FixedEncoder()
    x = _clip("left")
    out = enc(x)
    assert out.shape == (1, 4, enc.dim) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, enc(x.clone()))
    # the batch does not change a video's features
    both = enc(torch.cat([x, _clip("up")]))
    assert torch.allclose(both[:1], out, atol=1e-6)
    # features come from a fixed working resolution: the input size barely matters
    big = torch.nn.functional.interpolate(x[0].permute(0, 3, 1, 2).float(), size=(128, 192), mode="nearest")
    big = big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[None]
    assert (enc(big) - out).abs().mean() < 0.05
    assert enc.signature == "fixed-v2"


def test_fixed_encoder_sees_motion_direction_and_colour() -> None:
    enc = FixedEncoder()
    motion = slice(enc.dim - 5 - SHAPE_DIM, enc.dim - SHAPE_DIM)
    left, right = enc(_clip("left"))[0, 1:, motion], enc(_clip("right"))[0, 1:, motion]
    up, down = enc(_clip("up"))[0, 1:, motion], enc(_clip("down"))[0, 1:, motion]
    assert left[:, 0].mean() < 0 < right[:, 0].mean()  # dx
    assert up[:, 1].mean() < 0 < down[:, 1].mean()  # dy (image rows grow downwards)
    still = enc(_clip("rotate"))[0, 1:, motion]
    assert still[:, 0].abs().mean() < 0.2 and still[:, 1].abs().mean() < 0.2
    # foreground colour histogram (second block of 64 bins): a red object lands in the red bin
    fg = enc(_clip("rotate", colour=(222, 30, 36)))[0, 0, 64:128]
    red_bin = (3 * 4 + 0) * 4 + 0
    assert int(fg.argmax()) == red_bin
    blue = enc(_clip("rotate", colour=(30, 60, 225)))[0, 0, 64:128]
    assert int(blue.argmax()) == (0 * 4 + 0) * 4 + 3


def test_fixed_encoder_rejects_bad_frames() -> None:
    enc = FixedEncoder()
    with pytest.raises(ModelError, match="uint8"):
        enc(torch.zeros(1, 2, 8, 8, 3))
    with pytest.raises(ModelError, match=r"\[B, T, H, W, 3\]"):
        enc(torch.zeros(2, 8, 8, 3, dtype=torch.uint8))


def _tiny_clip_dir(tmp_path: Path, projected: bool) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=12,
    )
    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(cfg) if projected else CLIPVisionModel(cfg)
    d = tmp_path / ("clip-proj" if projected else "clip-vision")
    model.save_pretrained(d)
    return d


@pytest.mark.parametrize("projected", [True, False])
def test_clip_encoder_from_a_local_transformers_directory(tmp_path: Path, projected: bool) -> None:
    from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

    d = _tiny_clip_dir(tmp_path, projected)
    enc = build_encoder("clip", encoder_path=str(d))
    assert isinstance(enc, CLIPEncoder) and enc.dim == (12 if projected else 16) and enc.image_size == 32
    frames = torch.randint(0, 256, (2, 3, 40, 56, 3), dtype=torch.uint8)
    out = enc(frames)
    assert out.shape == (2, 3, enc.dim) and torch.isfinite(out).all()
    # the same as running the model by hand on the preprocessed pixels
    ref_model = (CLIPVisionModelWithProjection if projected else CLIPVisionModel).from_pretrained(d).eval()
    pix = enc.preprocess(frames.reshape(6, 40, 56, 3))
    assert pix.shape == (6, 3, 32, 32)
    with torch.no_grad():
        res = ref_model(pixel_values=pix)
    ref = res.image_embeds if projected else res.pooler_output
    assert torch.allclose(out.reshape(6, -1), ref, atol=1e-5)
    assert enc.signature.startswith("clip-hf-") and not any(p.requires_grad for p in enc.model.parameters())


def test_clip_encoder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        CLIPEncoder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a CLIP checkpoint"):
        CLIPEncoder(tmp_path / "empty")
    oc = tmp_path / "oc"
    oc.mkdir()
    (oc / "open_clip_config.json").write_text('{"model_cfg": {}}')
    try:
        import open_clip  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="open_clip"):
            CLIPEncoder(oc)
    with pytest.raises(ConfigError, match="unknown ALWIG encoder"):
        build_encoder("resnet")
    assert build_encoder("features") is None


def _shape(shape: str, size: tuple[int, int] = (96, 96), stretch_to: int | None = None) -> torch.Tensor:
    """Shape descriptors [T, SHAPE_DIM] of a rotating ``shape`` (optionally squashed to a square)."""
    enc = FixedEncoder()
    x = _clip("rotate", shape=shape, n=6, width=size[0], height=size[1])
    if stretch_to is None:
        return enc(x)[0, :, -SHAPE_DIM:]
    sq = torch.nn.functional.interpolate(
        x[0].permute(0, 3, 1, 2).float(), size=(stretch_to, stretch_to), mode="area"
    )
    sq = sq.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[None]
    return enc(sq, display_size=[size])[0, :, -SHAPE_DIM:]


def test_connected_components_separates_blobs() -> None:
    fg = np.zeros((1, 8, 8), dtype=bool)
    fg[0, 1:3, 1:3] = True  # blob A
    fg[0, 5:7, 4:8] = True  # blob B
    fg[0, 3, 3] = True  # touches A diagonally: 8-connected to it
    lab = connected_components(fg)[0]
    assert (lab > 0).sum() == fg.sum()
    assert len({int(v) for v in lab[1:3, 1:3].ravel()} | {int(lab[3, 3])}) == 1
    assert len({int(v) for v in lab[5:7, 4:8].ravel()}) == 1 and lab[1, 1] != lab[5, 4]


def test_shape_descriptors_tell_shapes_apart_whatever_the_rotation() -> None:
    circle, ring, star, triangle, bar = (_shape(s) for s in ("circle", "ring", "star", "triangle", "bar"))
    found = SHAPE_DIM - 1
    for d in (circle, ring, star, triangle, bar):
        assert torch.all(d[:, found] == 1)
    hist0 = 6  # radial mass histogram, first bin: within a quarter of the mean radius of the centre
    assert ring[:, hist0].max() < 0.01 < circle[:, hist0].min()
    # Fourier magnitudes of the outline (1..6): 5-fold star, 3-fold triangle, none for a circle
    assert torch.all(star[:, 4] > 2 * circle[:, 4]) and torch.all(triangle[:, 2] > 2 * circle[:, 2])
    elong = 12  # minor / major axis: a bar is long whatever its angle
    assert torch.all(bar[:, elong] < 0.6) and torch.all(circle[:, elong] > 0.85)
    # rotation changes the descriptors little (the spinning star, frame to frame)
    assert (star - star.mean(0)).abs().max() < 0.35


def test_shape_descriptors_undo_a_squashing_resize() -> None:
    # a circle in a wide video squashed to a square frame looks like an ellipse unless the
    # display size is given
    true = _shape("circle", size=(128, 64))
    fixed = _shape("circle", size=(128, 64), stretch_to=64)
    enc = FixedEncoder()
    x = _clip("rotate", shape="circle", n=6, width=128, height=64)
    sq = torch.nn.functional.interpolate(x[0].permute(0, 3, 1, 2).float(), size=(64, 64), mode="area")
    sq = sq.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)[None]
    naive = enc(sq)[0, :, -SHAPE_DIM:]
    elong = 12
    assert torch.all(fixed[:, elong] > 0.85) and torch.all(true[:, elong] > 0.85)
    assert torch.all(naive[:, elong] < 0.7)
    with pytest.raises(ModelError, match="display_size"):
        enc(sq, display_size=[(0, 64)])


def test_shape_descriptors_of_an_empty_frame() -> None:
    d = shape_descriptors(np.zeros((2, 16, 16), dtype=bool), np.ones(2))
    assert d.shape == (2, SHAPE_DIM) and not d.any()


def test_fixed_encoder_matches_its_golden_features() -> None:
    """The fixed encoder's features (what every ``fixed`` checkpoint was trained on) stay what they
    were: ``tests/golden/fixed_encoder_v2.npz`` was written by the encoder before its ``__call__`` was
    split into named steps. ``atol`` allows another CPU's float rounding, not a changed formula."""
    golden = np.load(Path(__file__).parent / "golden" / "fixed_encoder_v2.npz")
    x = torch.cat(
        [_clip("left"), _clip("up", colour=(30, 200, 60), shape="triangle"), _clip("zoom", shape="circle")]
    )
    enc = FixedEncoder()
    assert enc.signature == "fixed-v2"
    np.testing.assert_allclose(enc(x).numpy(), golden["plain"], rtol=0, atol=1e-5)
    display = enc(x, [[160, 90], [90, 160], [96, 64]]).numpy()
    np.testing.assert_allclose(display, golden["display"], rtol=0, atol=1e-5)
    assert not np.allclose(golden["plain"], golden["display"])  # the display size matters
