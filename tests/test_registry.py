"""The model registry, model options and task specs: names, "did you mean", file.py:Class, validation."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path

import pytest

import create_bench.models as models_pkg
import create_bench.tasks as tasks_pkg
from create_bench.errors import ConfigError, ModelError, RegistryError
from create_bench.models import MODELS, load_model, load_model_args, model_tasks, validate_model_args
from create_bench.models.base import BaseModel, ModelMeta
from create_bench.tasks import TASKS, get_task, parse_tasks

USER_MODEL = '''
import numpy as np
from create_bench.models.base import BaseModel, ModelMeta

class MyModel(BaseModel):
    meta = ModelMeta(name="my-model", inputs="none")

    def __init__(self, scale: float = 1.0, label: str = "x"):
        self.scale, self.label = scale, label

    def generate(self, batch, kind="title"):
        return [self.label for _ in batch["vid"]]

class NotAModel:
    pass

class Bare:
    """Protocol by duck typing, no meta and no base class."""
    def encode_videos(self, batch):
        return np.ones((len(batch["vid"]), 2), np.float32)
    def encode_texts(self, texts):
        return np.ones((len(texts), 2), np.float32)
'''


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    p = tmp_path / "my_model.py"
    p.write_text(USER_MODEL, "utf-8")
    return p


def test_registered_names() -> None:
    assert {"random", "raw-title", "nearest-neighbour", "alwig"} <= set(MODELS.names())


@pytest.mark.parametrize(
    ("typo", "hint"),
    [
        ("randon", "random"),
        ("raw_title", "raw-title"),
        ("nearest-neighbor", "nearest-neighbour"),
        ("alwg", "alwig"),
    ],
)
def test_unknown_name_did_you_mean(typo: str, hint: str) -> None:
    with pytest.raises(RegistryError) as ei:
        load_model(typo)
    msg = str(ei.value)
    assert f"did you mean '{hint}'" in msg
    assert "file.py:Class" in msg


def test_baselines_build_with_defaults() -> None:
    for name in ("random", "raw-title", "nearest-neighbour"):
        m = load_model(name)
        assert isinstance(m, BaseModel)
        assert m.meta.name == name
        assert set(model_tasks(m)) == {"retrieval", "title", "caption"}


def test_file_model(user_file: Path) -> None:
    m = load_model(f"{user_file}:MyModel", {"scale": 2, "label": "一只猫"})
    assert m.meta.name == "my-model"
    assert (m.scale, m.label) == (2, "一只猫")
    assert model_tasks(m) == ("title", "caption")  # generation only: retrieval is not claimed


def test_file_model_duck_typed_gets_default_meta(user_file: Path) -> None:
    m = load_model(f"{user_file}:Bare")
    assert isinstance(m.meta, ModelMeta) and m.meta.name == "Bare"
    assert model_tasks(m) == ("retrieval",)


def test_file_model_errors(user_file: Path, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="did you mean MyModel"):
        load_model(f"{user_file}:MyModle")
    with pytest.raises(RegistryError, match="no such file"):
        load_model(f"{tmp_path / 'nope.py'}:MyModel")
    with pytest.raises(ModelError, match="implements none of"):
        load_model(f"{user_file}:NotAModel")


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        ({"dimm": 8}, r"unknown option 'dimm' for model 'random'; did you mean 'dim'\?"),
        ({"dim": "big"}, r"option 'dim' of model 'random' must be int, got str 'big'"),
        ({"seed": True}, r"option 'seed' of model 'random' must be int, got bool"),
        ({"dim": 0}, r"model 'random' rejected its options .*dim must be >= 1"),
    ],
)
def test_bad_model_args(args: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_model("random", args)


def test_model_args_types_accepted() -> None:
    m = load_model("nearest-neighbour", {"ridge": 2, "frame_size": 16})  # int is fine where float is asked
    assert m.ridge == 2 and m.meta.frame_size == (16, 16)


def test_required_option_missing() -> None:
    class Needs(BaseModel):
        meta = ModelMeta(name="needs", inputs="none")

        def __init__(self, checkpoint: str):
            self.checkpoint = checkpoint

    with pytest.raises(ConfigError, match="needs option\\(s\\) checkpoint"):
        validate_model_args(Needs, {}, name="needs")
    validate_model_args(Needs, {"checkpoint": "x"}, name="needs")


def test_load_model_args_files(tmp_path: Path) -> None:
    y = tmp_path / "a.yaml"
    y.write_text("dim: 8\nseed: 3\n", "utf-8")
    assert load_model_args(y) == {"dim": 8, "seed": 3}
    j = tmp_path / "a.json"
    j.write_text(json.dumps({"dim": 4}), "utf-8")
    assert load_model_args(j) == {"dim": 4}
    empty = tmp_path / "empty.yaml"
    empty.write_text("", "utf-8")
    assert load_model_args(empty) == {}
    assert load_model_args(None) == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n", "utf-8")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_model_args(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{dim: 8", "utf-8")
    with pytest.raises(ConfigError, match="cannot parse model args file .*broken.json"):
        load_model_args(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_model_args(tmp_path / "missing.yaml")


def test_tasks_specs() -> None:
    assert [t.name for t in parse_tasks(None)] == ["retrieval", "title", "caption"]
    assert [t.name for t in parse_tasks("caption,retrieval")] == ["retrieval", "caption"]
    assert get_task("captioning") is TASKS["caption"]
    assert TASKS["retrieval"].requires == ("encode_videos", "encode_texts")
    with pytest.raises(ConfigError, match="did you mean 'caption'"):
        get_task("captoin")
    with pytest.raises(ConfigError, match="no tasks"):
        parse_tasks(" , ")


def test_tasks_never_import_models() -> None:
    for path in Path(tasks_pkg.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        bad = [m for m in imported if m.startswith(("create_bench.models", "create_bench.metrics"))]
        assert not bad, f"{path.name} imports {bad}"


def test_doctests() -> None:
    for mod in (tasks_pkg, models_pkg):
        assert doctest.testmod(mod).failed == 0
