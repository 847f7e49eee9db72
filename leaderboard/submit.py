#!/usr/bin/env python
"""Submit to the create-bench leaderboard: a thin wrapper around ``create-bench submit``.

    python leaderboard/submit.py PATH [--server URL --token TOKEN | --local leaderboard/] [--data DIR]

See leaderboard/README.md for the submission format.
"""

from __future__ import annotations

import sys

from create_bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
