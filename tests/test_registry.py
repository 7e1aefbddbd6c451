"""The registry: names, lookup(None) resolution order, defaults, entry points."""

from __future__ import annotations

import pytest

from parallelizer import Parallelizer, SerialNonParallelizer, registry
from parallelizer._core import context as _context

LAUNCHER_VARS = [
    "PMI_SIZE",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
    "PMIX_SIZE",
    "SLURM_NTASKS",
    "PMI_RANK",
    "PMIX_RANK",
]


class FakeBackend(SerialNonParallelizer):
    """A stand-in backend that records its options."""

    def __init__(self, **options):
        super().__init__()
        self.options = options


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "_default", None)
    monkeypatch.setattr(registry, "_cache", {})
    monkeypatch.setattr(registry, "_entry_points", lambda: {})
    monkeypatch.setattr(_context, "_stack", [])  # no with-block of another test is active
    monkeypatch.delenv("PARALLELIZER", raising=False)
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)


def test_instance_is_returned_as_is():
    par = SerialNonParallelizer()
    assert Parallelizer.lookup(par) is par
    with pytest.raises(TypeError, match="options"):
        Parallelizer.lookup(par, nprocs=2)


def test_names_build_backends_with_options():
    Parallelizer.register("fake", FakeBackend)
    built = Parallelizer.lookup("fake", nprocs=4, start_method="spawn")
    assert isinstance(built, FakeBackend) and built.options == {"nprocs": 4, "start_method": "spawn"}
    assert Parallelizer.lookup("fake:3").options == {"nprocs": 3}
    assert Parallelizer.lookup("fake:3", nprocs=5).options == {"nprocs": 5}
    assert isinstance(Parallelizer.lookup("serial"), SerialNonParallelizer)


def test_unknown_name_lists_the_known_ones():
    Parallelizer.register("fake", FakeBackend)
    with pytest.raises(ValueError, match="unknown parallelizer 'nope'") as info:
        Parallelizer.lookup("nope")
    assert "fake, mpi, multiprocessing, serial" in str(info.value)


@pytest.mark.parametrize("bad", ["fake:0", "fake:-2", "fake:x", ":4", ""])
def test_bad_counts_and_names(bad):
    Parallelizer.register("fake", FakeBackend)
    with pytest.raises(ValueError):
        Parallelizer.lookup(bad)


def test_bad_key_type():
    with pytest.raises(TypeError, match="key"):
        Parallelizer.lookup(3)


def test_lookup_none_defaults_to_serial():
    assert isinstance(Parallelizer.lookup(None), SerialNonParallelizer)
    assert Parallelizer.lookup(None) is Parallelizer.lookup(None)  # one shared instance


def test_with_block_wins_over_everything(monkeypatch):
    Parallelizer.register("fake", FakeBackend)
    monkeypatch.setenv("PARALLELIZER", "fake:2")
    outer, inner = SerialNonParallelizer(), SerialNonParallelizer()
    with outer:
        assert Parallelizer.lookup(None) is outer
        with inner:
            assert Parallelizer.lookup(None) is inner
        assert Parallelizer.lookup(None) is outer
    assert isinstance(Parallelizer.lookup(None), FakeBackend)


def test_environment_variable_with_count(monkeypatch):
    Parallelizer.register("fake", FakeBackend)
    monkeypatch.setenv("PARALLELIZER", "fake:4")
    found = Parallelizer.lookup(None)
    assert found.options == {"nprocs": 4}
    assert Parallelizer.lookup(None) is found  # built once, then shared
    assert Parallelizer.lookup(None, nprocs=6).options == {"nprocs": 6}  # options win


def test_environment_variable_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("PARALLELIZER", "nope")
    with pytest.raises(ValueError, match="PARALLELIZER") as info:
        Parallelizer.lookup(None)
    assert "known names" in str(info.value)
    monkeypatch.setenv("PARALLELIZER", "serial:zero")
    with pytest.raises(ValueError, match="PARALLELIZER"):
        Parallelizer.lookup(None)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("mpi:3", r"MPI takes the number of processes from the launcher \(mpiexec -n 3 python script.py\)"),
        ("serial:3", "the serial parallelizer always runs one process"),
    ],
)
def test_a_count_for_a_backend_without_one_names_the_variable(monkeypatch, spec, why):
    monkeypatch.setenv("PARALLELIZER", spec)
    name = spec.partition(":")[0]
    with pytest.raises(ValueError, match=why) as info:
        Parallelizer.lookup(None)
    message = str(info.value)
    assert f"PARALLELIZER={spec!r} asks for 3 processes, but {name!r} takes no process count" in message
    assert "only 'multiprocessing' takes one (e.g. multiprocessing:3)" in message
    with pytest.raises(ValueError, match=f"key {spec!r} asks for 3 processes"):
        Parallelizer.lookup(spec)
    with pytest.raises(ValueError, match=f"par_or_name {spec!r} asks for 3 processes"):
        Parallelizer.set_default(spec)
    assert Parallelizer.get_default().nprocs == 1  # the refused default was not stored


def test_a_count_for_a_registered_factory_without_nprocs_is_refused(monkeypatch):
    Parallelizer.register("plain", lambda: SerialNonParallelizer())
    with pytest.raises(ValueError, match="'plain' takes no process count: its factory has no nprocs parameter"):
        Parallelizer.lookup("plain:2")
    assert Parallelizer.lookup("plain").nprocs == 1


@pytest.mark.parametrize(
    "env",
    [
        {"PMI_SIZE": "2"},
        {"OMPI_COMM_WORLD_SIZE": "4"},
        {"MV2_COMM_WORLD_SIZE": "3"},
        {"SLURM_NTASKS": "8", "PMI_RANK": "0"},
        {"SLURM_NTASKS": "8", "PMIX_RANK": "0"},
    ],
)
def test_mpi_launcher_with_several_ranks_selects_mpi(monkeypatch, env):
    Parallelizer.register("mpi", FakeBackend)  # stands in for MPIParallelizer
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert isinstance(Parallelizer.lookup(None), FakeBackend)


@pytest.mark.parametrize("env", [{"PMI_SIZE": "1"}, {"SLURM_NTASKS": "8"}, {"OMPI_COMM_WORLD_SIZE": "x"}])
def test_single_rank_or_batch_shell_is_not_mpi(monkeypatch, env):
    Parallelizer.register("mpi", FakeBackend)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert type(Parallelizer.lookup(None)) is SerialNonParallelizer


def test_environment_wins_over_launcher_and_default(monkeypatch):
    Parallelizer.register("fake", FakeBackend)
    Parallelizer.register("mpi", lambda **options: pytest.fail("mpi must not be built"))
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PARALLELIZER", "fake")
    Parallelizer.set_default("serial")
    assert isinstance(Parallelizer.lookup(None), FakeBackend)


def test_set_default_and_get_default():
    assert isinstance(Parallelizer.get_default(), SerialNonParallelizer)
    Parallelizer.register("fake", FakeBackend)
    Parallelizer.set_default("fake:2")
    assert Parallelizer.get_default().options == {"nprocs": 2}
    assert Parallelizer.lookup(None) is Parallelizer.get_default()
    mine = FakeBackend()
    Parallelizer.set_default(mine)
    assert Parallelizer.get_default() is mine and Parallelizer.lookup(None) is mine
    Parallelizer.set_default(None)
    assert type(Parallelizer.lookup(None)) is SerialNonParallelizer
    with pytest.raises(ValueError, match="known names"):
        Parallelizer.set_default("nope")
    with pytest.raises(TypeError):
        Parallelizer.set_default(42)


def test_register_checks_its_arguments():
    with pytest.raises(ValueError, match=":"):
        Parallelizer.register("a:b", FakeBackend)
    with pytest.raises(TypeError, match="name"):
        Parallelizer.register("", FakeBackend)
    with pytest.raises(TypeError, match="factory"):
        Parallelizer.register("x", 3)


def test_factory_must_return_a_parallelizer():
    Parallelizer.register("broken", lambda **options: object())
    with pytest.raises(TypeError, match="not a Parallelizer"):
        Parallelizer.lookup("broken")


def test_entry_point_backends(monkeypatch):
    class FakeEntryPoint:
        name = "plugin"

        def load(self):
            return FakeBackend

    monkeypatch.setattr(registry, "_entry_points", lambda: {"plugin": FakeEntryPoint()})
    assert "plugin" in registry.known_names()
    assert isinstance(Parallelizer.lookup("plugin"), FakeBackend)


def test_explain_says_why(monkeypatch):
    assert "serial" in Parallelizer.explain_lookup()
    monkeypatch.setenv("PMI_SIZE", "3")
    assert "mpi" in Parallelizer.explain_lookup() and "PMI_SIZE=3" in Parallelizer.explain_lookup()


def test_explain_reads_as_a_sentence(monkeypatch):
    assert Parallelizer.explain_lookup() == (
        "serial, because nothing else applies (no PARALLELIZER, no MPI launcher, no default)"
    )
    monkeypatch.setenv("PARALLELIZER", "multiprocessing:3")
    assert Parallelizer.explain_lookup() == (
        "multiprocessing with {'nprocs': 3}, because the environment variable PARALLELIZER is 'multiprocessing:3'"
    )
    monkeypatch.delenv("PARALLELIZER")
    monkeypatch.setenv("PMI_SIZE", "3")
    assert Parallelizer.explain_lookup() == "mpi, because an MPI launcher started 3 ranks (PMI_SIZE=3)"


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            "bogus",
            "unknown parallelizer 'bogus' in the environment variable PARALLELIZER='bogus'; "
            "known names: mpi, multiprocessing, serial",
        ),
        (
            "multiprocessing:0",
            "the environment variable PARALLELIZER: the process count after ':' must be a positive integer, "
            "got 'multiprocessing:0'",
        ),
    ],
)
def test_a_bad_parallelizer_variable_is_flagged_not_echoed(monkeypatch, spec, message):
    monkeypatch.setenv("PARALLELIZER", spec)
    assert registry.lookup_error() == message
    assert Parallelizer.explain_lookup() == f"raises ValueError: {message}"
    with pytest.raises(ValueError) as raised:
        Parallelizer.lookup(None)
    assert str(raised.value) == message  # what info says is what lookup(None) raises
    monkeypatch.setenv("PARALLELIZER", "serial")
    assert registry.lookup_error() is None
