"""The engine every backend shares; nothing here is public.

Read top-down, after :mod:`parallelizer.base` and :mod:`parallelizer.semantics`:

* :mod:`.transport`: the few calls a backend provides, as the engine sees them;
* :mod:`.mapping`: ``map`` (static and dynamic schedules) over that transport;
* :mod:`.checks`: argument checks, and refusals that every process raises;
* :mod:`.mismatch`: collective-mismatch detection (``PARALLELIZER_DEBUG``);
* :mod:`.selfmail`: messages a process sends to itself (one rule, every backend);
* :mod:`.codec`, :mod:`.pickling`, :mod:`.memory`: objects as bytes and
  buffers, and the warm memory large arrays are received into;
* :mod:`.remote`: exceptions that travel between processes;
* :mod:`.context`, :mod:`.env`, :mod:`.tags`, :mod:`.limits`,
  :mod:`.progress`: the active-parallelizer stack, environment variables,
  message tags, every size threshold and time limit, the progress bar.

Nothing in this package imports a backend or :mod:`parallelizer.base`.
"""
