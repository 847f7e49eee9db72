"""CLI sub-commands: one module each, with ``register(subparsers)``. Imports of heavy modules
happen inside ``run`` so that ``create-bench --help`` stays fast."""
