"""The optional progress bar of ``map(..., progress=True)`` (tqdm)."""

from __future__ import annotations

from typing import Protocol

INSTALL_HINT = "pip install tqdm  (or: pip install 'parallelizer[progress]')"


class Bar(Protocol):
    """The part of ``tqdm.tqdm`` that map uses."""

    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


def open_bar(total: int, enabled: bool) -> Bar | None:
    """A tqdm bar counting ``total`` items, or ``None`` when not ``enabled``.

    Raises:
        ImportError: ``enabled`` is True and tqdm is not installed.
    """
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ImportError(f"map(progress=True) needs tqdm, which is not installed: {INSTALL_HINT}") from exc
    bar: Bar = tqdm(total=total, unit="item", dynamic_ncols=True)
    return bar
