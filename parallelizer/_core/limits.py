"""Every size threshold and time limit of the engine, named and explained once.

Sizes decide which path a message takes; times decide how long a process
waits for another before it acts. Backends and engine modules import them
from here, so a threshold is never written twice.
"""

from __future__ import annotations

# ---------------------------------------------------------------------- sizes (bytes)

OUT_OF_BAND_MIN = 64 << 10
"""Buffers inside a pickled object (numpy arrays in dicts, lists, ...) from
this size on leave the pickle stream (protocol 5) and travel as raw memory."""

POOL_MIN = 256 << 10
"""Received arrays from this size on are placed in warm, reused memory
(:mod:`parallelizer._core.memory`)."""

POOL_KEEP_CHUNKS = 8
"""At most this many free mappings stay in the warm-memory pool."""

POOL_KEEP_BYTES = 1 << 30
"""At most this much free memory stays in the warm-memory pool."""

CMA_MIN = 256 << 10
"""Multiprocessing: buffers from this size on are pulled by the receiver out
of the sender's memory (cross-memory attach) instead of streamed through the
socket."""

PARALLEL_COPY_MIN = 1 << 20
"""Multiprocessing gather: root copies its own part in a thread, beside the
pulls of the other parts, from this size on."""

PULL_PIECE_MIN = 1 << 20
"""Multiprocessing: a pull this many bytes long or more, when it is the only
one, is split into pieces of at least this size, read side by side in
threads (one ``process_vm_readv`` runs below memory bandwidth: on a 2-core
VM, 16 MiB took 1.10 ms in one call and 0.63 ms in two threads, against
0.74 ms for a memcpy)."""

FOLD_PIECE = 512 << 10
"""Multiprocessing ``reduce(out=)``: root reads the other parts this many bytes at a
time, each straight into one small scratch array, and folds the piece into
``out`` at once (no array of a part's size; the piece is still in cache)."""

PULL_PIECES_MAX = 4
"""Multiprocessing: the most pieces one pull is split into (fewer with fewer CPUs)."""

CMA_CHUNK = 1 << 30
"""Multiprocessing: the most bytes one ``process_vm_readv`` call copies (the
kernel stops short of 2 GiB anyway)."""

SPIN_WAIT = 100e-6
"""Multiprocessing: seconds a process waiting for a collective's message keeps
polling its sockets before it sleeps in ``poll``, when the group has no more
processes than this process has usable CPUs (a sleeping process wakes up
slowly: on this project's 2-core VM an allreduce of an int took 190 us
sleeping, 120 us polling first). A group with more processes than CPUs never
polls so: a polling process would take the CPU the process it waits for
needs. (Other load on the machine is not looked at; each wait polls at most
this long.) Main decides for the whole group and tells the workers; the same
choice also picks the barrier and allreduce algorithms where every process
sends at once (see ``parallelizer._mp.collectives``)."""

SOCKET_READ = 256 << 10
"""Multiprocessing: bytes asked of one ``recv`` while parsing small frames."""

MPI_CHUNK = 1 << 30
"""MPI: the most bytes one MPI call moves, so messages over 2 GiB work with
MPI-3 libraries (whose counts are C ints)."""

MPI_BCAST_BLOCK = 1024
"""MPI: the first block of a broadcast; small objects travel in this one call."""

MPI_SLOT = 128
"""MPI: bytes each rank contributes to the description exchange before a
gather or reduction (small objects travel inside it)."""

# ---------------------------------------------------------------------- counts

MAP_PREFETCH = 2
"""Dynamic ``map``: chunks queued at each process, so it never waits for the next."""

READS_PER_PUMP = 64
"""Multiprocessing: socket reads per wake-up before the other sockets get a turn."""

# ---------------------------------------------------------------------- times (seconds)

MAP_POLL_INTERVAL = 0.0005
"""Dynamic ``map``: how long root computes between looks for finished chunks."""

STOP_GRACE = 5.0
"""Multiprocessing: how long workers get to exit after STOP before they are terminated."""

KILL_GRACE = 2.0
"""Multiprocessing: how long between SIGTERM and SIGKILL when stopping stragglers."""

EXIT_STATUS_WAIT = 2.0
"""Multiprocessing: how long main waits for a dead worker's exit status to report it."""

REAP_POLL = 0.01
"""Multiprocessing: how often main looks whether a signalled worker has exited."""

IDLE_POLL = 0.05
"""Multiprocessing: how often main looks at exiting workers while it stops them."""

ABORT_REPORT_GRACE = 0.5
"""MPI: the longest pause between writing a failing rank's report and
``MPI_Abort``, so the launcher forwards the report before it kills the job
(a pipe or socket is watched until the launcher has read it: usually a few
milliseconds)."""

ABORT_DRAIN_POLL = 0.01
"""MPI: how often an aborting rank looks whether the launcher has read its report,
and how long it waits once it has, for the launcher to pass it on."""

LAUNCHER_QUERY = 20.0
"""How long ``mpiexec --version`` may take to say which MPI it belongs to."""
