"""Command line entry point: ``secretcache`` (the console script) and ``python -m secretcache``.

The commands live in :mod:`secretcache._cli`; run ``secretcache --help`` for them.
"""

from __future__ import annotations

import sys

from secretcache._cli import main

__all__ = ["main"]


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    sys.exit(main())
