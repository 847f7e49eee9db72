"""Helpers for the leaderboard tests: model cards, predictions directories written straight in the
format of ARCHITECTURE.md (numpy + json, independent of ``create_bench.predictions``), crafted
archives, a small text-only dataset, and a uvicorn server in a subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from create_bench.leaderboard.submission import ExpectedIds

CARD: dict[str, Any] = {
    "schema_version": 1,
    "name": "simple-baseline",
    "team": "create-bench tests",
    "description": "Seeded random embeddings; fixed generations.",
    "url": "https://example.org/simple",
    "params": 0,
    "create_configs": ["train"],
    "pretraining_data": None,
    "test_data_seen": False,
}


def write_card(path: Path, **overrides: Any) -> Path:
    card = {**CARD, **overrides}
    (path / "model_card.yaml").write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def small_expected(n: int = 4, refs: int = 2) -> ExpectedIds:
    vids = tuple(f"v{i}" for i in range(n))
    return ExpectedIds(
        split="test",
        vids=vids,
        text_ids={
            kind: tuple(f"{v}:{kind}:{k}" for v in vids for k in range(refs)) for kind in ("caption", "title")
        },
    )


def write_predictions(
    path: Path,
    expected: ExpectedIds,
    *,
    dim: int = 8,
    seed: int = 0,
    dtype: Any = np.float32,
    generations: dict[str, dict[str, str]] | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """A complete predictions directory for ``expected`` (random unit embeddings, given or dummy texts)."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((len(expected.vids), dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    np.save(path / "video_embeddings.npy", v.astype(dtype))
    (path / "video_ids.json").write_text(json.dumps(list(expected.vids)), "utf-8")
    tids = [t for kind in ("caption", "title") for t in expected.text_ids.get(kind, ())]
    t = rng.standard_normal((len(tids), dim))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    np.save(path / "text_embeddings.npy", t.astype(dtype))
    (path / "text_ids.json").write_text(json.dumps(tids), "utf-8")
    gens = generations or {
        v: {"title": f"视频{v}的标题", "caption": f"一个人在视频{v}里做事情"} for v in expected.vids
    }
    with open(path / "generations.jsonl", "w", encoding="utf-8") as fh:
        for vid in expected.vids:
            fh.write(json.dumps({"vid": vid, **gens[vid]}, ensure_ascii=False) + "\n")
    write_card(path, **(card or {}))
    return path


def tar_gz(out: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """Write crafted members (TarInfo + data) into a .tar.gz, as an attacker would."""
    with tarfile.open(out, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return out


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def dir_to_members(path: Path, prefix: str = "") -> list[tuple[tarfile.TarInfo, bytes]]:
    return [file_member(prefix + p.name, p.read_bytes()) for p in sorted(path.iterdir())]


def text_dataset(path: Path, *, n_test: int = 6, refs: int = 3, seed: int = 0, omega: bool = False) -> Path:
    """A small dataset with placeholder videos (the scorer never decodes): for server tests.
    ``omega``: with a ``title_omega`` column (uneven per-character attractiveness, for ACTEr-r)."""
    from create_bench.data.build import write_rows

    rng = np.random.default_rng(seed)
    words = list("猫狗鱼鸟车船山水花树球书灯门")
    rows = []
    for split, n in (("train", 4), ("validation", 2), ("test", n_test)):
        k = 1 if split == "train" else refs
        for i in range(n):
            rows.append(
                {
                    "vid": f"{split[:2]}{i:03d}",
                    "split": split,
                    "category": i % 2,
                    "tags": ["生活"],
                    "raw_title": "".join(rng.choice(words, 4)),
                    "titles": ["".join(rng.choice(words, 5)) + "标题" for _ in range(k)],
                    "captions": ["".join(rng.choice(words, 7)) + "描述" for _ in range(k)],
                    "video": {"bytes": b"not-decoded", "path": None},
                    "num_frames": 10,
                    "fps": 10.0,
                    "duration": 1.0,
                    "width": 32,
                    "height": 32,
                }
            )
            if omega:
                rows[-1]["title_omega"] = [
                    [round(float(x), 1) for x in rng.integers(0, 11, len(t)) / 10] for t in rows[-1]["titles"]
                ]
    return write_rows(path, rows, name="leaderboard-text", categories=["生活", "美食"])


def references(data_dir: Path, split: str = "test") -> list[str]:
    """Every reference text of a split (what must never appear in a server response)."""
    from create_bench.data.shards import read_table

    table = read_table(data_dir, split, columns=["titles", "captions"])
    return [t for col in ("titles", "captions") for refs in table.column(col).to_pylist() for t in refs]


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    *args: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "create_bench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"create-bench {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def add_team(db_url: str, name: str, *, daily_limit: int = 5) -> str:
    out = cli("leaderboard", "add-team", name, "--db", db_url, "--daily-limit", str(daily_limit)).stdout
    token = out.strip().splitlines()[-1]
    assert re.fullmatch(r"cbt_[0-9a-f]+_[A-Za-z0-9_-]+", token), out
    return token


@contextlib.contextmanager
def running_server(
    db_url: str,
    data_dir: Path,
    storage: Path,
    *,
    workers: int = 1,
    extra: tuple[str, ...] = (),
    log: Path | None = None,
) -> Iterator[str]:
    """``create-bench leaderboard serve`` on a free loopback port; yields its base URL."""
    import httpx

    port = free_port()
    out = open(log or (storage.parent / f"server-{port}.log"), "wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "create_bench", "leaderboard", "serve",
            "--db", db_url, "--data", str(data_dir), "--storage", str(storage),
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--poll", "0.2",
            "--log-level", "warning", *extra,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                out.flush()
                raise AssertionError(
                    f"server exited with {proc.returncode}: {Path(out.name).read_text()[-3000:]}"
                )
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("server did not start in 120 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
