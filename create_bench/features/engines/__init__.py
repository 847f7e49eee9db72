"""Extraction engines: ``local`` and ``torchrun`` (:mod:`.local`, layer 4: they decode through the
loader's DataLoader workers) and ``ray`` (:mod:`.ray`, layer 3: Ray Data tasks and actors)."""
