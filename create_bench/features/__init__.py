"""Frozen encoders used by the benchmark itself (layer 3): the text encoder behind BERTScore and
ACTEr-r (:mod:`create_bench.features.text_encoder`, :mod:`create_bench.features.text_metrics`)."""
