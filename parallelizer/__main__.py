"""``python -m parallelizer``: see :mod:`parallelizer.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
