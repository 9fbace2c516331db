"""Numbers shared by the rotation grace tests (``test_grace_*.py``)."""

from __future__ import annotations

GRACE = 5.0
POLLS = 20  # polls in one grace: one per 250 ms
THREADS = 8
