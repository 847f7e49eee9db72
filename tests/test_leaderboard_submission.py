"""Submission format: model card schema, safe unpacking, local validation of predictions."""

from __future__ import annotations

import doctest
import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from leaderboard_util import (
    CARD,
    dir_to_members,
    file_member,
    small_expected,
    tar_gz,
    write_card,
    write_predictions,
)

from create_bench.errors import SubmissionError
from create_bench.leaderboard import archive as archive_mod
from create_bench.leaderboard import submission as sub_mod
from create_bench.leaderboard.submission import (
    Limits,
    ModelCard,
    check_directory,
    load_schema,
    open_submission,
    pack_directory,
    parse_model_card,
    unpack_archive,
    validate_directory,
)

ROOT = Path(__file__).resolve().parents[1]


def card_text(**overrides) -> str:
    return yaml.safe_dump({**CARD, **overrides}, allow_unicode=True, sort_keys=False)


# --------------------------------------------------------------------------- model card


def test_published_schema_is_the_one_the_code_uses():
    published = json.loads((ROOT / "leaderboard" / "submission.schema.json").read_text("utf-8"))
    assert published == load_schema()
    assert published["properties"]["schema_version"]["const"] == sub_mod.SCHEMA_VERSION


def test_schema_validator_doctest():
    assert doctest.testmod(sub_mod, verbose=False).failed == 0


def test_valid_card_round_trips():
    card = parse_model_card(card_text())
    assert card.name == "simple-baseline"
    assert card.test_data_seen is False and card.params == 0
    assert parse_model_card(card.to_yaml()) == card
    assert ModelCard.from_dict(card.to_dict()) == card


@pytest.mark.parametrize(
    "text, expect",
    [
        ("model_name: [unclosed\nteam: x\n", r"malformed YAML at line 2"),
        ("model_name: x\n  team: : y\n", r"malformed YAML at line \d+, column \d+"),
        ("- just\n- a list\n", r"expected a mapping of fields, got array"),
        ("a: &anchor [1, 2]\nb: *anchor\n", r"aliases .* not allowed"),
        ("", r"expected a mapping of fields, got null"),
    ],
)
def test_malformed_yaml_is_rejected_with_position(text, expect):
    with pytest.raises(SubmissionError, match=expect):
        parse_model_card(text)


@pytest.mark.parametrize(
    "overrides, expect",
    [
        ({"schema_version": 2}, r"\$\.schema_version: must be 1, got 2"),
        ({"schema_version": True}, r"\$\.schema_version: must be 1, got true"),
        ({"name": ""}, r"\$\.name: must not be empty"),
        ({"params": -5}, r"\$\.params: must be >= 0"),
        ({"params": 1.5}, r"\$\.params: expected integer or null, got number"),
        ({"url": "javascript:alert(1)"}, r"\$\.url: .* does not match"),
        ({"tema": "x"}, r"unknown field 'tema' \(did you mean 'team'\?\)"),
        ({"create_configs": ["tset"]}, r"create_configs\[0\]: \"tset\" is not one of"),
        ({"create_configs": ["train", "train"]}, r"create_configs: items must be unique"),
        ({"test_data_seen": "no"}, r"test_data_seen: expected boolean, got string"),
        ({"inputs": "pixels"}, r"\$\.inputs: \"pixels\" is not one of"),
    ],
)
def test_schema_errors_name_the_field(overrides, expect):
    with pytest.raises(SubmissionError, match=expect):
        parse_model_card(card_text(**overrides))


def test_missing_fields_are_all_listed():
    with pytest.raises(SubmissionError) as info:
        parse_model_card("schema_version: 1\n")
    for field in ("name", "team", "description", "params", "create_configs", "test_data_seen"):
        assert f"missing required field '{field}'" in str(info.value)


def test_oversized_card(tmp_path):
    write_card(tmp_path, description="x" * 4000)
    with pytest.raises(SubmissionError, match="limit is 1000"):
        sub_mod.load_model_card(tmp_path / "model_card.yaml", limits=Limits(max_card_bytes=1000))


# --------------------------------------------------------------------------- archives


@pytest.fixture()
def good_dir(tmp_path) -> Path:
    return write_predictions(tmp_path / "sub", small_expected())


def test_pack_and_unpack_round_trip(good_dir, tmp_path):
    archive = pack_directory(good_dir, tmp_path / "s.tar.gz")
    root = unpack_archive(archive, tmp_path / "out")
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in good_dir.iterdir())
    for p in good_dir.iterdir():
        assert (root / p.name).read_bytes() == p.read_bytes()


def test_archive_with_one_top_level_directory(good_dir, tmp_path):
    archive = tar_gz(tmp_path / "s.tar.gz", dir_to_members(good_dir, prefix="mysub/"))
    root = unpack_archive(archive, tmp_path / "out")
    # written flat: the archive's directory name is never used on disk (a 300-character name
    # would otherwise fail there as "File name too long")
    assert root == tmp_path / "out" and not (root / "mysub").exists()
    assert (root / "model_card.yaml").is_file()


def _bad(tmp_path: Path, good_dir: Path, extra: list, *, limits: Limits | None = None, match: str):
    archive = tar_gz(tmp_path / "bad.tar.gz", dir_to_members(good_dir) + extra)
    out = tmp_path / "out"
    with pytest.raises(SubmissionError, match=match):
        unpack_archive(archive, out, limits=limits)
    # Nothing is left behind, and nothing escaped the destination.
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil.txt").exists()


def test_rejects_dotdot_paths(tmp_path, good_dir):
    _bad(tmp_path, good_dir, [file_member("../evil.txt", b"x")], match=r"'\.\.' in paths is not allowed")
    _bad(tmp_path, good_dir, [file_member("sub/../../evil.txt", b"x")], match=r"'\.\.' in paths")


def test_rejects_absolute_paths(tmp_path, good_dir):
    _bad(tmp_path, good_dir, [file_member("/tmp/evil.txt", b"x")], match="absolute paths are not allowed")


@pytest.mark.parametrize(
    "kind, what",
    [
        (tarfile.SYMTYPE, "a symbolic link"),
        (tarfile.LNKTYPE, "a hard link"),
        (tarfile.CHRTYPE, "a character device"),
        (tarfile.BLKTYPE, "a block device"),
        (tarfile.FIFOTYPE, "a FIFO"),
    ],
)
def test_rejects_links_and_devices(tmp_path, good_dir, kind, what):
    info = tarfile.TarInfo("text_ids.json")
    info.type = kind
    info.linkname = "/etc/passwd"
    members = [m for m in dir_to_members(good_dir) if m[0].name != "text_ids.json"]
    archive = tar_gz(tmp_path / "bad.tar.gz", members + [(info, None)])
    with pytest.raises(SubmissionError, match=f"'text_ids.json' is {what}"):
        unpack_archive(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_rejects_unknown_files_and_duplicates(tmp_path, good_dir):
    _bad(tmp_path, good_dir, [file_member("evil.sh", b"x")], match="unexpected file 'evil.sh'")
    _bad(tmp_path, good_dir, [file_member("model_card.yml", b"x")], match=r"did you mean 'model_card.yaml'")
    _bad(tmp_path, good_dir, [file_member("model_card.yaml", b"x")], match="appears twice")
    _bad(tmp_path, good_dir, [file_member("a/b/model_card.yaml", b"x")], match="top level")


def test_decompression_bomb_stops_at_the_cap(tmp_path):
    # 64 MiB of zeros compress to ~64 KiB; with a 1 MiB cap the stream must stop early.
    info = tarfile.TarInfo("text_embeddings.npy")
    size = 64 << 20
    info.size = size
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.addfile(info, io.BytesIO(bytes(size)))
    assert archive.stat().st_size < 200_000
    limits = Limits(max_unpacked_bytes=1 << 20)
    with pytest.raises(SubmissionError, match="decompression bomb"):
        unpack_archive(archive, tmp_path / "out", limits=limits)
    assert list((tmp_path / "out").iterdir()) == []


def test_garbage_after_a_member_is_never_inflated(tmp_path):
    """A gzip stream of 64 MiB after a tiny member: only the declared bytes are read, the rest
    is never decompressed, and what remains is not a valid submission."""
    raw = tmp_path / "gz-bomb.tar.gz"
    with gzip.open(raw, "wb") as gz:
        info = tarfile.TarInfo("model_card.yaml")
        info.size = 10
        gz.write(info.tobuf())
        gz.write(b"x" * 10 + bytes(502))
        for _ in range(64):
            gz.write(b"\xff" * (1 << 20))
    read = []
    real = archive_mod._CappedReader.readinto

    def counting(self, buffer):
        n = real(self, buffer)
        read.append(n)
        return n

    archive_mod._CappedReader.readinto = counting
    try:
        root = unpack_archive(raw, tmp_path / "out", limits=Limits(max_unpacked_bytes=1 << 20))
    finally:
        archive_mod._CappedReader.readinto = real
    assert sum(read) < 1 << 20
    assert [p.name for p in root.iterdir()] == ["model_card.yaml"]
    with pytest.raises(SubmissionError, match="no predictions"):
        validate_directory(root)


def test_too_many_members(tmp_path, good_dir):
    members = [file_member("README.md", b"x")] + [(tarfile.TarInfo("sub"), None) for i in range(40)]
    for info, _ in members[1:]:
        info.type = tarfile.DIRTYPE
    archive = tar_gz(tmp_path / "many.tar.gz", members)
    with pytest.raises(SubmissionError, match="more than 32 members"):
        unpack_archive(archive, tmp_path / "out")


def test_oversized_upload(tmp_path, good_dir):
    archive = pack_directory(good_dir, tmp_path / "s.tar.gz")
    with pytest.raises(SubmissionError, match="upload limit is 100"):
        unpack_archive(archive, tmp_path / "out", limits=Limits(max_upload_bytes=100))


def test_not_a_tarball(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_bytes(b"hello")
    with pytest.raises(SubmissionError, match="not a gzip file"):
        unpack_archive(p, tmp_path / "out")
    p.write_bytes(gzip.compress(b"not a tar at all" * 100))
    with pytest.raises(SubmissionError, match="not a valid .tar.gz|holds no files"):
        unpack_archive(p, tmp_path / "out2")
    good = gzip.compress(b"")
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(SubmissionError):
        unpack_archive(p, tmp_path / "out3")


def test_directory_checks(tmp_path, good_dir):
    assert "model_card.yaml" in check_directory(good_dir)
    (good_dir / "link.json").symlink_to(good_dir / "video_ids.json")
    with pytest.raises(SubmissionError, match="symbolic link"):
        check_directory(good_dir)
    (good_dir / "link.json").unlink()
    (good_dir / "nested").mkdir()
    with pytest.raises(SubmissionError, match="sub-directories are not allowed"):
        check_directory(good_dir)
    (good_dir / "nested").rmdir()
    (good_dir / "model_card.yaml").unlink()
    with pytest.raises(SubmissionError, match="missing model_card.yaml"):
        check_directory(good_dir)


# --------------------------------------------------------------------------- predictions


def test_valid_submission(good_dir, tmp_path):
    sub = validate_directory(good_dir, expected=small_expected())
    assert sub.card.name == "simple-baseline"
    assert set(sub.tasks) == {"retrieval", "title", "caption"}
    archive = pack_directory(good_dir, tmp_path / "s.tar.gz")
    with open_submission(archive, expected=small_expected(), workdir=tmp_path / "w") as s2:
        assert s2.card == sub.card
        unpacked = s2.path
    assert not unpacked.exists()  # the temporary unpack is removed


def _rewrite_ids(path: Path, name: str, ids: list[str]) -> None:
    (path / name).write_text(json.dumps(ids), "utf-8")


def test_missing_and_extra_vids(good_dir):
    exp = small_expected()
    ids = list(exp.vids[:-1]) + ["intruder"]
    _rewrite_ids(good_dir, "video_ids.json", ids)
    with pytest.raises(SubmissionError) as info:
        validate_directory(good_dir, expected=exp)
    msg = str(info.value)
    assert "video_ids.json" in msg and "missing 1: 'v3'" in msg and "extra 1: 'intruder'" in msg


def test_missing_generation_vid(good_dir):
    lines = (good_dir / "generations.jsonl").read_text("utf-8").splitlines()
    (good_dir / "generations.jsonl").write_text("\n".join(lines[:-1]) + "\n", "utf-8")
    with pytest.raises(SubmissionError, match=r"generations.*missing 1: 'v3'"):
        validate_directory(good_dir, expected=small_expected())


def test_missing_text_ids(good_dir):
    exp = small_expected()
    ids = json.loads((good_dir / "text_ids.json").read_text())
    emb = np.load(good_dir / "text_embeddings.npy")
    keep = [i for i, t in enumerate(ids) if t != "v1:caption:1"]
    _rewrite_ids(good_dir, "text_ids.json", [ids[i] for i in keep])
    np.save(good_dir / "text_embeddings.npy", emb[keep])
    with pytest.raises(SubmissionError, match=r"text_ids.json \(caption\).*missing 1: 'v1:caption:1'"):
        validate_directory(good_dir, expected=exp)


def test_nan_embeddings(good_dir):
    emb = np.load(good_dir / "video_embeddings.npy")
    emb[2, 3] = np.nan
    np.save(good_dir / "video_embeddings.npy", emb)
    with pytest.raises(SubmissionError, match=r"(?i)nan"):
        validate_directory(good_dir, expected=small_expected())


def test_wrong_shapes(good_dir):
    emb = np.load(good_dir / "video_embeddings.npy")
    np.save(good_dir / "video_embeddings.npy", emb[:-1])  # one row fewer than video_ids.json
    with pytest.raises(SubmissionError, match=r"video_embeddings"):
        validate_directory(good_dir, expected=small_expected())


def test_mismatched_embedding_dims(good_dir):
    emb = np.load(good_dir / "text_embeddings.npy")
    np.save(good_dir / "text_embeddings.npy", emb[:, :5])
    with pytest.raises(SubmissionError, match=r"(?i)dim|shape"):
        validate_directory(good_dir, expected=small_expected())


def test_float16_embeddings_are_accepted(tmp_path):
    d = write_predictions(tmp_path / "f16", small_expected(), dtype=np.float16)
    assert "retrieval" in validate_directory(d, expected=small_expected()).tasks


def test_card_written_by_eval_is_accepted_once_the_submitter_adds_their_fields():
    """`create-bench eval` writes ModelMeta.to_dict() (+ args, spec) as model_card.yaml; a
    submitter adds schema_version, team, create_configs and test_data_seen."""
    from create_bench.models.base import ModelMeta

    meta = ModelMeta(
        name="random",
        params=0,
        training_data=("CREATE train split",),
        frame_size=(32, 32),
        columns=("width", "height", "rotation"),  # ALWIG's fixed encoder declares these
    )
    card = {**meta.to_dict(), "args": {"seed": 0}, "spec": "random"}
    assert list(card["columns"]) == ["width", "height", "rotation"]
    with pytest.raises(SubmissionError) as info:
        ModelCard.from_dict(card)
    for field in ("schema_version", "team", "create_configs", "test_data_seen"):
        assert f"missing required field '{field}'" in str(info.value)
    card.update(schema_version=1, team="t", create_configs=["train"], test_data_seen=False)
    parsed = ModelCard.from_dict(yaml.safe_load(yaml.safe_dump(card)))
    assert parsed.name == "random" and parsed.model_info()["training_data"] == ["CREATE train split"]


def test_complete_card_fills_what_eval_cannot_know_and_never_guesses():
    from create_bench.errors import SubmissionError
    from create_bench.leaderboard.client import CardFields, complete_card
    from create_bench.leaderboard.submission import ModelCard

    eval_card = {k: v for k, v in CARD.items() if k not in ("schema_version", "team", "test_data_seen")}
    with pytest.raises(SubmissionError, match=r"^model_card.yaml does not give team, test_data_seen: pass "
                       r"--team NAME; --test-data-seen or --no-test-data-seen$"):  # fmt: skip
        complete_card(eval_card, CardFields())
    done = complete_card(eval_card, CardFields(team="T", test_data_seen=True, create_configs=()))
    card = ModelCard.from_dict(done)  # valid against the schema
    assert (
        card.data["schema_version"] == 1 and card.test_data_seen is True and card.data["create_configs"] == []
    )
    no_configs = {k: v for k, v in eval_card.items() if k != "create_configs"}
    with pytest.raises(SubmissionError, match="--create-configs"):
        complete_card(no_configs, CardFields(team="T", test_data_seen=False))
