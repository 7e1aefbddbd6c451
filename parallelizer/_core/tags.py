"""Message spaces and the tags of the collectives' internal messages."""

from __future__ import annotations

import enum


class Space(enum.IntEnum):
    """Message spaces, so user messages never match collective traffic."""

    USER = 0
    COLL = 1


class CollTag(enum.IntEnum):
    """Tags of the collectives' internal messages (in ``Space.COLL``)."""

    BCAST = 1
    SCATTER = 2
    GATHER = 3
    MAP_TASK = 5
    MAP_RESULT = 6
    SESSION = 7  # client/server sessions: parallelizer._pool.messages
    DEBUG = 8
    BARRIER = 9  # multiprocessing's barrier between processes that each have a CPU
    ALLREDUCE = 10  # multiprocessing's allreduce between two processes that each have a CPU
    ALLGATHER = 11  # multiprocessing's allgather between processes that each have a CPU
