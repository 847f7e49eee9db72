"""Frozen encoders and features (layer 3; see the modules for the few at layer 4): frame
encoders (:mod:`.encoders`), extraction engines (:mod:`.extract`, :mod:`.engines`) writing feature
shards (:mod:`.parts`), one on-disk feature store (:mod:`.store`), and the text encoder behind
BERTScore and ACTEr-r (:mod:`.text_encoder`, :mod:`.text_metrics`)."""
