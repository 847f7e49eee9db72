"""``create-bench leaderboard {serve,worker,add-team,migrate,render}``: the evaluation server."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from create_bench.commands._scoring import add_scoring_arguments, scoring_options
from create_bench.commands._text import add_text_encoder_args, text_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="leaderboard server, scoring worker, teams, static board",
        description="Run the evaluation server and its scoring workers, manage teams and the database, "
        "and render the static board. 'create-bench leaderboard ACTION --help' describes each action.",
    )
    lsub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)

    s = lsub.add_parser(
        "serve",
        help="run the evaluation server (and scoring workers)",
        description="Run the evaluation server: teams upload submissions, scoring workers started "
        "alongside (--workers) score them against --data, and the board shows the results.",
    )
    _db(s)
    _scoring(s)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8000, help="port to listen on")
    s.add_argument(
        "--workers", type=int, default=1, help="scoring worker processes to run alongside (0: none)"
    )
    s.add_argument("--max-upload-mb", type=float, default=1024, help="upload size limit")
    s.add_argument("--max-unpacked-mb", type=float, default=4096, help="limit on the unpacked submission")
    s.add_argument("--title", default="create-bench leaderboard", help="title of the board's pages")
    s.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level",
    )
    s.set_defaults(func=run_serve)

    w = lsub.add_parser(
        "worker",
        help="run one scoring worker (polls the database queue)",
        description="Run one scoring worker: it takes queued submissions from the database, scores "
        "them against --data and stores the results. Run several for more throughput.",
    )
    _db(w)
    _scoring(w)
    w.add_argument("--max-unpacked-mb", type=float, default=4096, help="limit on the unpacked submission")
    w.add_argument("--max-jobs", type=int, default=None, help="exit after this many jobs")
    w.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by serve --workers
    w.set_defaults(func=run_worker)

    a = lsub.add_parser(
        "add-team",
        help="create a team and print its token (shown once)",
        description="Create a team (migrating the database first if needed) and print its upload "
        "token. The token is shown only this once; the database keeps only its hash.",
    )
    a.add_argument("name", help="team name")
    _db(a, data=False)
    a.add_argument(
        "--daily-limit", type=int, default=5, help="submissions per UTC day (failed ones do not count)"
    )
    a.set_defaults(func=run_add_team)

    m = lsub.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Create the leaderboard database schema, or upgrade it to this version's.",
    )
    _db(m, data=False)
    m.set_defaults(func=run_migrate)

    r = lsub.add_parser(
        "render",
        help="render leaderboard/README.md and index.html from results JSON files",
        description="Render the static board (README.md table and index.html) from a directory of "
        "results JSON files.",
    )
    r.add_argument("--results", default="leaderboard/results", help="directory of results JSON files")
    r.add_argument("--out", default="leaderboard", help="directory of README.md and index.html")
    r.set_defaults(func=run_render)


def _db(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument(
        "--db", required=True, metavar="URL", help="sqlite:///path.db, a file path, or postgresql://..."
    )
    if data:
        p.add_argument(
            "--data", required=True, metavar="DIR", help="dataset with the references to score against"
        )
        p.add_argument(
            "--storage",
            metavar="DIR",
            default=None,
            help="where uploads are kept (default: next to a SQLite file, else ./leaderboard-storage)",
        )


def _scoring(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="test", help="split submissions are scored on")
    add_scoring_arguments(p)
    add_text_encoder_args(p)  # off by default: the board then says why BERTScore-F/ACTEr-r are absent
    p.add_argument(
        "--lease", type=float, default=60.0, help="seconds before a silent worker's job is re-queued"
    )
    p.add_argument(
        "--heartbeat", type=float, default=None, help="seconds between lease renewals (default lease/6)"
    )
    p.add_argument("--poll", type=float, default=1.0, help="seconds between queue polls when idle")
    p.add_argument(
        "--timeout-per-generation",
        type=float,
        default=0.25,
        metavar="S",
        help="with --text-encoder: seconds added to a submission's scoring time limit per generated "
        "title or caption (default 0.25)",
    )
    p.add_argument(
        "--scorer",
        default=None,
        metavar="MODULE:FUNC",
        help="scoring function (default create_bench.scoring:score_predictions; for tests and custom boards)",
    )


def _storage(args: argparse.Namespace) -> Path:
    from sqlalchemy.engine import make_url

    from create_bench.leaderboard.db import normalize_url

    if args.storage:
        return Path(args.storage)
    url = make_url(normalize_url(args.db))
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        db = Path(url.database)
        return db.with_name(db.name + ".storage")
    return Path("leaderboard-storage")


def _configs(args: argparse.Namespace):  # -> (ServerConfig-less pieces)
    from create_bench.leaderboard.submission import Limits
    from create_bench.leaderboard.worker import DEFAULT_SCORER, ScoringConfig, WorkerConfig

    options = scoring_options(args, text_encoder=text_options(args, absolute=True))
    scoring = ScoringConfig(data_dir=Path(args.data), split=args.split, options=options)
    limits = Limits(
        max_upload_bytes=int(getattr(args, "max_upload_mb", 1024) * (1 << 20)),
        max_unpacked_bytes=int(args.max_unpacked_mb * (1 << 20)),
    )
    worker = WorkerConfig(
        storage_dir=_storage(args),
        scoring=scoring,
        lease_s=args.lease,
        heartbeat_s=args.heartbeat or max(0.2, args.lease / 6),
        poll_s=args.poll,
        timeout_per_generation_s=args.timeout_per_generation,
        scorer=args.scorer or DEFAULT_SCORER,
        limits=limits,
    )
    return scoring, limits, worker


def run_serve(args: argparse.Namespace) -> int:
    from create_bench.data.shards import open_dataset
    from create_bench.leaderboard.server import ServerConfig, serve
    from create_bench.leaderboard.supervisor import WorkerPool

    open_dataset(args.data)  # fail fast on a bad --data
    scoring, limits, wconf = _configs(args)
    _check_text_encoder(scoring.options)
    config = ServerConfig(
        db_url=args.db, storage_dir=wconf.storage_dir, scoring=scoring, limits=limits, title=args.title
    )
    pool = WorkerPool(args.db, wconf, args.workers)

    def shutdown(signum: int, _frame: object) -> None:
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the
        # handlers that were there before it: this one, so the workers stop with the server.
        pool.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    pool.start()
    try:
        serve(config, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        pool.stop()
    return 0


def _check_text_encoder(options: object) -> None:
    """Fail fast (one line) on a --text-encoder the workers could not load, before serving."""
    from create_bench.features.text_encoder import TextEncoder
    from create_bench.scoring import text_metric_options

    text = text_metric_options(getattr(options, "text_encoder", None))
    if text is not None:  # loaded once here and dropped: each worker loads its own
        TextEncoder(text.encoder, layer=text.layer, device=text.device, batch_size=text.batch_size)


def run_worker(args: argparse.Namespace) -> int:
    from create_bench.leaderboard.db import Database
    from create_bench.leaderboard.worker import Worker

    _, _, wconf = _configs(args)
    db = Database(args.db)
    db.check_schema()
    stop = threading.Event()
    # SIGTERM: stop polling; a job in progress is finished, or re-queued by its lease if killed.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.parent_pid:  # started by `serve`: stop when the server is gone (even after SIGKILL)
        threading.Thread(target=_watch_parent, args=(args.parent_pid, stop), daemon=True).start()
    Worker(db, wconf).run(stop, max_jobs=args.max_jobs)
    return 0


def _watch_parent(pid: int, stop: threading.Event) -> None:
    import os

    while not stop.wait(1.0):
        if os.getppid() != pid:
            stop.set()


def run_add_team(args: argparse.Namespace) -> int:
    from create_bench.leaderboard.db import Database

    db = Database(args.db)
    db.migrate()
    team, token = db.add_team(args.name, daily_limit=args.daily_limit)
    print(
        f"team {team.name!r} (id {team.id}, {team.daily_limit} submissions/day). Its token, shown only this once:"
    )
    print(token)
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from create_bench.leaderboard.db import Database

    print(f"schema version {Database(args.db).migrate()}")
    return 0


def run_render(args: argparse.Namespace) -> int:
    from create_bench.leaderboard.render import load_entries, render

    readme, index = render(args.results, args.out)
    print(f"rendered {len(load_entries(args.results))} result(s): {readme}, {index}")
    return 0
