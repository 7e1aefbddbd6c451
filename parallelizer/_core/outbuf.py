"""``out=``: receiving a collective's array result into the caller's own array.

The rule (API.md, "Receiving into your own array"): a process whose result
is an array writes it into ``out`` and returns ``out``; a process whose
result is ``None`` (off root, for ``gather``/``reduce``) ignores ``out``. An
``out`` that cannot take the result (not an array, read-only, not
C-contiguous, another shape or dtype) raises ``ValueError`` naming ``out``
on every process, and nothing is written.

Passing the keyword is part of the call, like ``root``: every process
passes ``out=`` (``None`` where it has no array), or none does. After the
data has moved, the processes exchange their verdicts (:func:`problem`) in
one small step, so every process raises the same error before any ``out``
is written.

Example:
    >>> import numpy as np
    >>> problem(np.zeros(3), np.arange(3.0)) is None
    True
    >>> problem(np.zeros(4), np.arange(3.0))
    'out has shape (4,), the result has shape (3,)'
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["NOT_GIVEN", "Written", "apart", "check_all", "problem", "unfit", "write"]


class _NotGiven:
    """The default of ``out``: the keyword was not passed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __reduce__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


class Written(NamedTuple):
    """A backend's answer when it has already checked every ``out`` and received into them.

    ``value`` is what the call returns (``out``, or ``None`` where the result
    is ``None``). Backends that receive into ``out`` directly (MPI: no new
    array, no copy) return it; the others return the result itself, and
    the generic rule (:func:`problem` on every process, then :func:`write`)
    applies.
    """

    value: Any


def _is_array(obj: object) -> bool:
    import sys

    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(obj, numpy.ndarray)


def problem(out: Any, result: Any) -> str | None:
    """Why ``out`` cannot receive ``result`` on this process, or ``None`` if it can (or is ignored).

    Example:
        >>> import numpy as np
        >>> problem(None, np.zeros(2)) is None, problem(np.zeros(2), None) is None
        (True, True)
        >>> problem(np.zeros(2, dtype=np.float32), np.zeros(2))
        'out has dtype float32, the result has dtype float64'
    """
    if out is None or result is None:
        return None
    if not _is_array(out):
        return f"out must be a numpy array (or None), not {type(out).__name__}"
    if type(out).__name__ == "MaskedArray":
        return "out must be a plain numpy array, not a masked array"
    if not _is_array(result):
        return f"the result here is a {type(result).__name__}, not a numpy array: out= cannot receive it"
    return unfit(out, result.shape, result.dtype)


def unfit(out: Any, shape: tuple[int, ...], dtype: Any) -> str | None:
    """Why ``out`` cannot receive an array of this shape and dtype, or ``None`` if it can.

    What :func:`problem` checks once the result is known to be an array;
    a backend calls it before the data moves.

    Example:
        >>> import numpy as np
        >>> unfit(np.zeros(3), (3,), np.dtype(float)) is None, unfit([0.0], (1,), np.dtype(float))
        (True, 'out must be a numpy array (or None), not list')
    """
    if not _is_array(out):
        return f"out must be a numpy array (or None), not {type(out).__name__}"
    if type(out).__name__ == "MaskedArray":
        return "out must be a plain numpy array, not a masked array"
    if not out.flags.writeable:
        return "out is read-only"
    if not out.flags.c_contiguous:
        return "out must be C-contiguous"
    if out.shape != tuple(shape):
        return f"out has shape {out.shape}, the result has shape {tuple(shape)}"
    if out.dtype != dtype:
        return f"out has dtype {out.dtype}, the result has dtype {dtype}"
    return None


def check_all(problems: list[str | None], call: str) -> None:
    """Raises ``ValueError`` naming ``out`` if any process's ``out`` cannot take its result.

    Args:
        problems: Every process's :func:`problem`, in rank order (the same list everywhere).
        call: The collective, for the message.
    """
    bad = [(rank, text) for rank, text in enumerate(problems) if text is not None]
    if bad:
        said = "; ".join(f"rank {rank}: {text}" for rank, text in bad)
        raise ValueError(f"{call}(out=...): {said} (nothing was written)")


def write(out: Any, result: Any) -> Any:
    """``result`` written into ``out`` (returns ``out``); ``result`` itself where ``out`` is ignored."""
    if out is None or result is None:
        return result
    if out is not result:
        import numpy

        numpy.copyto(out, result, casting="no")
    return out


def apart(obj: Any, out: Any) -> Any:
    """``obj``, or a copy of it where it shares memory with the ``out`` it is gathered into.

    A part that overlaps ``out`` would be overwritten by the other parts
    arriving (or, sent, read by the others after that).

    Example:
        >>> import numpy as np
        >>> whole = np.zeros(4)
        >>> part = whole[:2]
        >>> apart(part, whole) is part, apart(part, np.zeros(4)) is part
        (False, True)
    """
    if out is None or not _is_array(out) or not _is_array(obj):
        return obj
    import numpy

    return obj.copy() if numpy.may_share_memory(obj, out) else obj
