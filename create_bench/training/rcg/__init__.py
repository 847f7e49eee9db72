"""Training RCG (application code): :mod:`.train` (two stages), :mod:`.batches`, :mod:`.validate`,
:mod:`.ablate` (ablations with paired bootstrap)."""
