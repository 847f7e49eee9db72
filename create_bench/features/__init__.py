"""Frame features (layer 3; see the modules for the few at layer 4): frozen encoders
(:mod:`.encoders`), extraction engines (:mod:`.extract`, :mod:`.engines`) writing feature shards
(:mod:`.parts`), and one on-disk feature store (:mod:`.store`)."""
