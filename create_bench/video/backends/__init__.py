"""Decoder backends behind :func:`create_bench.video.decoding.decode` (layer 2).

``decord`` (the evaluation decoder), ``pyav`` (cross-checks, same frames) and ``nvdec`` (GPU). Each
takes checked inputs (sorted unique targets, a ``(H, W)`` or None, a parsed device) and returns
``uint8 [T, H, W, 3]``. Backends import only the modules below the public API
(:mod:`~create_bench.video.checks`, :mod:`~create_bench.video.plan`,
:mod:`~create_bench.video.frames`) and each other, never :mod:`create_bench.video.decoding`.
"""
