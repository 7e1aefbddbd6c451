"""Cross-memory attach: copying memory between processes in one step.

``process_vm_readv`` copies from another process's memory straight into
ours (Linux 3.2+), so a large array moves with a single copy and no shared
segment. The kernel allows it between processes of the same user unless a
security policy forbids it (Yama ``ptrace_scope``, container seccomp
profiles): then the call fails with ``EPERM`` and the caller falls back to
streaming the bytes through the socket.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys

from .._core.limits import CMA_CHUNK


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _load() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        readv = libc.process_vm_readv
    except (OSError, AttributeError):
        return None
    readv.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_IOVec),
        ctypes.c_ulong,
        ctypes.POINTER(_IOVec),
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    readv.restype = ctypes.c_ssize_t
    return readv


_readv = _load()

AVAILABLE = _readv is not None
"""Whether this platform has ``process_vm_readv`` at all."""

# Errors that mean "never for this pair of processes": fall back for good.
REFUSED = frozenset({errno.EPERM, errno.EACCES, errno.ENOSYS})


def read(pid: int, remote_address: int, local_address: int, nbytes: int) -> None:
    """Copies ``nbytes`` at ``remote_address`` in process ``pid`` to ``local_address``.

    Runs without the GIL (ctypes releases it), so several reads may run in
    threads at once.

    Raises:
        OSError: With the call's errno: ``EPERM``/``ENOSYS`` (not allowed
            here, see :data:`REFUSED`), ``ESRCH`` (the process is gone),
            ``EFAULT`` (the remote memory is no longer mapped).
    """
    if _readv is None:
        raise OSError(errno.ENOSYS, "process_vm_readv is not available on this platform")
    done = 0
    while done < nbytes:
        size = min(nbytes - done, CMA_CHUNK)
        local = _IOVec(local_address + done, size)
        remote = _IOVec(remote_address + done, size)
        count = _readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)  # type: ignore[operator]
        if count < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"process_vm_readv from pid {pid}: {os.strerror(code)}")
        if count == 0:
            raise OSError(errno.EFAULT, f"process_vm_readv from pid {pid} made no progress")
        done += count
