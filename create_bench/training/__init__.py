"""Application code: training loops, validation, resumable state, distributed set-up, data streams
and ablation runs (open_clip's ``open_clip_train`` to the library's ``open_clip``).

It may import anything in :mod:`create_bench`; nothing in the library imports it (only ``cli.py``
and ``commands/``, which launch it). ``tests/test_layers.py`` enforces both directions.
"""
