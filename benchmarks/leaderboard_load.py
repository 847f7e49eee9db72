"""Load test of the leaderboard server on loopback (bounded in time).

Starts ``create-bench leaderboard serve`` (uvicorn + scoring workers) on 127.0.0.1, then for
``--duration`` seconds ``--clients`` threads mix submissions (POST /api/submissions, real
.tar.gz uploads that pass every check) with page views (``/``, ``/api/leaderboard``, submission
pages). Reports requests/s and p50/p95 latency per kind, with a trivial endpoint (``/healthz``)
measured in the same run as the baseline, and checks that no accepted submission was lost
(every 202 is on the board; with ``--drain`` they must also all finish).

``--entries 20,1000`` runs once per board size: the database is first seeded with that many
finished submissions (real results JSON from the scorer, written straight into the database),
so the board's read path is measured at scale; a summary table ends the output.

    python benchmarks/leaderboard_load.py --data data/create-sample [--quick] [--duration 10]
    python benchmarks/leaderboard_load.py --text-videos 200 --entries 20,1000 --workers 1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ensure_data  # noqa: E402


def make_archive(data: Path, out: Path, seed: int = 0) -> Path:
    """Predictions for the test split (random unit embeddings, fixed texts) + card, as .tar.gz."""
    from create_bench.leaderboard.submission import ExpectedIds, pack_directory
    from create_bench.predictions import write_predictions

    exp = ExpectedIds.from_dataset(data, "test")
    rng = np.random.default_rng(seed)
    tids = [t for kind in ("caption", "title") for t in exp.text_ids[kind]]

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, 32)).astype(np.float32)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)

    card = {
        "schema_version": 1,
        "name": "load-test",
        "team": "load",
        "description": "random",
        "params": 0,
        "create_configs": [],
        "test_data_seen": False,
    }
    pred = write_predictions(
        out.with_suffix(""),
        generations={v: {"title": "一个视频", "caption": "一个人在做事情"} for v in exp.vids},
        video_ids=list(exp.vids),
        video_embeddings=unit(len(exp.vids)),
        text_ids=tids,
        text_embeddings=unit(len(tids)),
        model_card=card,
    )
    return pack_directory(pred, out)


def seed_entries(db: Any, n: int, archive: Path, data: Path, *, team_names: list[str]) -> None:
    """``n`` finished submissions with the real scorer's results JSON, written in one transaction
    (as if workers had finished them: submitted, queued, running, finished events each)."""
    import json
    import uuid

    from create_bench.leaderboard import db as dbm
    from create_bench.leaderboard.submission import open_submission
    from create_bench.scoring import score_predictions

    with open_submission(archive, workdir=archive.parent / "seed-work") as sub:
        results = score_predictions(sub.path, data, "test", bootstrap=50, seed=0)
        card = sub.card.to_dict()
        results["model"] = sub.card.model_info()
    teams = {t.name: t.id for t in db.teams()}
    t0 = time.time() - n
    with db.write() as conn:
        for i in range(n):
            at = t0 + i
            res = conn.execute(
                dbm.submissions.insert().values(
                    uid=uuid.uuid4().hex, team_id=teams[team_names[i % len(team_names)]],
                    model_name=f"seeded-{i}", card_json=json.dumps({**card, "name": f"seeded-{i}"}),
                    state="finished", split="test", upload_path="uploads/none.tar.gz", upload_sha256="0" * 64,
                    upload_bytes=1, created_at=at - 100, updated_at=at, attempts=1,
                    results_json=json.dumps({**results, "submission": {"id": i + 1}}, ensure_ascii=False),
                )
            )  # fmt: skip
            sid = res.inserted_primary_key[0]
            for k, state in enumerate(("submitted", "queued", "running", "finished")):
                conn.execute(dbm.events.insert().values(submission_id=sid, at=at - 100 + k, state=state))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_load(
    data: Path,
    *,
    duration: float = 10.0,
    clients: int = 8,
    teams: int = 4,
    submit_share: float = 0.2,
    workers: int = 1,
    bootstrap: int = 0,
    drain: float = 0.0,
    entries: int = 0,
    workdir: Path | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the load test; returns the measurements (the slow test asserts on them)."""
    import httpx

    from create_bench.leaderboard.db import Database

    tmp = Path(workdir or tempfile.mkdtemp(prefix="lb-load-"))
    tmp.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{tmp / 'board.db'}"
    db = Database(db_url)
    db.migrate()
    tokens = [db.add_team(f"team-{i}", daily_limit=100_000)[1] for i in range(teams)]
    archive = make_archive(data, tmp / "submission.tar.gz")
    body = archive.read_bytes()
    if entries:
        t = time.perf_counter()
        seed_entries(db, entries, archive, data, team_names=[f"team-{i}" for i in range(teams)])
        log(f"seeded {entries} finished submissions in {time.perf_counter() - t:.1f} s")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_log = open(tmp / "server.log", "wb")
    cmd = [
        sys.executable, "-m", "create_bench", "leaderboard", "serve", "--db", db_url, "--data", str(data),
        "--storage", str(tmp / "storage"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--bootstrap", str(bootstrap), "--poll", "0.2", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=server_log, stderr=subprocess.STDOUT)
    drained = 0.0
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    accepted: list[int] = []
    lock = threading.Lock()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; see {tmp / 'server.log'}")
            time.sleep(0.2)

        stop = time.monotonic() + duration

        def client(i: int) -> None:
            rng = random.Random(i)
            with httpx.Client(base_url=url, timeout=60) as c:
                while time.monotonic() < stop:
                    r = rng.random()
                    t = time.perf_counter()
                    if r < submit_share:
                        kind = "submit"
                        resp = c.post(
                            "/api/submissions",
                            content=body,
                            headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}",
                                     "Content-Type": "application/gzip"},
                        )  # fmt: skip
                        # 503: every validation slot was busy; an answer to retry, not a failure
                        ok = resp.status_code in (202, 503)
                        if resp.status_code == 202:
                            with lock:
                                accepted.append(resp.json()["id"])
                    else:
                        with lock:
                            known = accepted[-1] if accepted else None
                        kind, path = rng.choice(
                            [("board", "/"), ("api", "/api/leaderboard"), ("healthz", "/healthz")]
                            + ([("detail", f"/submissions/{known}")] if known else [])
                        )
                        resp = c.get(path)
                        ok = resp.status_code == 200
                    dt = time.perf_counter() - t
                    with lock:
                        lat[kind].append(dt)
                        if not ok:
                            errors[f"{kind} {resp.status_code}"] += 1

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0

        board = httpx.get(url + "/api/leaderboard", timeout=60).json()["entries"]
        on_board = {e["id"] for e in board}
        lost = sorted(set(accepted) - on_board)
        finished = None
        drained = time.monotonic()
        if drain > 0:
            end = time.monotonic() + drain
            while time.monotonic() < end:
                states = [
                    e["state"] for e in httpx.get(url + "/api/leaderboard", timeout=60).json()["entries"]
                ]
                finished = states.count("finished") - entries
                if finished == len(accepted) or "failed" in states:
                    break
                time.sleep(0.5)
        drained = time.monotonic() - drained
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server_log.close()
    total = sum(len(v) for v in lat.values())
    out = {
        "duration_s": wall,
        "clients": clients,
        "requests": total,
        "requests_per_s": total / wall,
        "entries": entries,
        "accepted": len(accepted),
        "lost": lost,
        "finished": finished,
        "errors": dict(errors),
        "latency": {
            k: {"n": len(v), "p50_ms": pct(v, 50) * 1e3, "p95_ms": pct(v, 95) * 1e3} for k, v in lat.items()
        },
        "workdir": str(tmp),
    }
    log(f"board of {entries} seeded entries:")
    log(f"{total} requests in {wall:.1f} s from {clients} clients: {out['requests_per_s']:.1f} requests/s")
    for kind, s in sorted(out["latency"].items()):
        log(f"  {kind:<8s} n={s['n']:5d}  p50 {s['p50_ms']:8.1f} ms  p95 {s['p95_ms']:8.1f} ms")
    base = out["latency"].get("healthz", {}).get("p95_ms")
    if base:
        for kind in ("board", "api", "detail", "submit"):
            if kind in out["latency"]:
                log(
                    f"  p95 {kind} / p95 healthz (baseline, same run): {out['latency'][kind]['p95_ms'] / base:6.2f}x"
                )
    log(f"accepted submissions: {len(accepted)}; lost: {len(lost)}; errors: {dict(errors) or 'none'}")
    if drain > 0:
        log(f"finished after drain: {finished}/{len(accepted)} (waited {drained:.1f} s of {drain:g})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/create-sample")
    p.add_argument("--quick", action="store_true", help="3 s, 4 clients")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--drain", type=float, default=120.0, help="seconds to wait for every submission to finish"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (DB, uploads, server log)")
    p.add_argument(
        "--entries", default="0", help="comma-separated board sizes to seed, one run each (e.g. 20,1000)"
    )
    p.add_argument("--submit-share", type=float, default=0.2, help="share of requests that are submissions")
    p.add_argument(
        "--text-videos", type=int, default=0,
        help="instead of --data, build a small text-only dataset with this many test videos",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.clients, args.drain = 3.0, 4, 60.0
    tmp = Path(tempfile.mkdtemp(prefix="lb-load-"))
    outs = []
    try:
        if args.text_videos:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from leaderboard_util import text_dataset

            data = text_dataset(tmp / "data", n_test=args.text_videos)
        else:
            data = ensure_data(args.data)
        for n in [int(x) for x in args.entries.split(",")]:
            outs.append(
                run_load(data, duration=args.duration, clients=args.clients, workers=args.workers,
                         drain=args.drain, entries=n, submit_share=args.submit_share, workdir=tmp / f"run-{n}")
            )  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\nentries  requests/s  /api/leaderboard p50/p95 ms  / p50/p95 ms  healthz p95 ms")
    for o in outs:
        lat = o["latency"]
        api, page, hz = (lat.get(k, {}) for k in ("api", "board", "healthz"))
        print(f"{o['entries']:7d}  {o['requests_per_s']:10.1f}  {api.get('p50_ms', float('nan')):10.1f} / "
              f"{api.get('p95_ms', float('nan')):8.1f}  {page.get('p50_ms', float('nan')):7.1f} / "
              f"{page.get('p95_ms', float('nan')):7.1f}  {hz.get('p95_ms', float('nan')):8.1f}")  # fmt: skip
    ok = all(not o["lost"] and not o["errors"] and (o["finished"] in (None, o["accepted"])) for o in outs)
    print("OK" if ok else "FAILED: lost, failed or unfinished submissions")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
