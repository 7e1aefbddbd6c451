"""A user's script whose functions fail on another process: tests/test_tracebacks.py
checks that the remote traceback names this file and shows the failing line."""

import sys

from parallelizer import ClientServerRunner, Parallelizer, RemoteError


def job(parallelizer=None):
    if parallelizer.id == parallelizer.nprocs - 1:
        raise ValueError("negative density")  # a worker's line
    return parallelizer.gather(parallelizer.id)


def inverse(x):
    return 1 // x  # fails on item 5


def mapping(parallelizer=None):
    data = list(range(-5, 1)) if parallelizer.on_main else None  # 0 is the last item: the last rank's
    return parallelizer.map(inverse, data)


def client(parallelizer=None):
    try:
        parallelizer.map(inverse, list(range(-5, 1)), schedule="static")
    except RemoteError as err:
        print(err, file=sys.stderr)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "pool":
        ClientServerRunner(client).run()
    else:
        Parallelizer.lookup(None).run(job if mode == "run" else mapping)
