"""The CREATE-sample generator (layer 2: :mod:`.sample`, :mod:`.text`, :mod:`.video`) and the only
other code that knows how it draws, the ``fixed`` frame encoder (:mod:`.fixed_encoder`, layer 3: torch)."""
