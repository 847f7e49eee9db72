"""Training ALWIG (the model itself, its checkpoints and its evaluation wrapper are library code
in :mod:`create_bench.models.alwig`). Entry: :func:`create_bench.training.alwig.train.train`;
ablations: ``python -m create_bench.training.alwig.ablate``."""
