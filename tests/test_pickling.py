"""What goes by value and what by reference when main seals a call.

Plain pickle is tried first (it is faster), guarded so that everything
cloudpickle would ship by value still goes by value: functions and classes
of ``__main__``, objects of such classes, lambdas, local functions, and
modules registered with ``cloudpickle.register_pickle_by_value``.
"""

from __future__ import annotations

import pickle
import sys
import types
from collections.abc import Iterator

import cloudpickle
import pytest

from parallelizer._core import pickling


def square(x: int) -> int:
    """An importable function."""
    return x * x


THIS = sys.modules[__name__]


@pytest.fixture
def cloudpickle_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Records every object pickled through cloudpickle."""
    calls: list[object] = []
    real = pickling._cloudpickle_dumps()

    def spy(obj: object, **kwargs: object) -> bytes:
        calls.append(obj)
        return real(obj, **kwargs)

    monkeypatch.setattr(pickling, "_cloudpickle_dumps", lambda: spy)
    return calls


@pytest.fixture
def main_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in ``__main__`` that names what the test puts in it (as a script's would)."""
    module = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", module)
    yield module


def _in_main(module: types.ModuleType, obj: object, name: str) -> None:
    obj.__module__ = "__main__"  # type: ignore[attr-defined]
    obj.__qualname__ = name  # type: ignore[attr-defined]
    setattr(module, name, obj)


def _seal(obj: object) -> bytes:
    body, buffers = pickling.dumps_out_of_band(obj, "the call", None, by_value=True)
    assert buffers == []
    return body


def test_an_importable_function_and_plain_arguments_skip_cloudpickle(cloudpickle_calls: list[object]) -> None:
    body = _seal((square, (3,), {"x": [1.5, "a"]}))
    assert cloudpickle_calls == []
    func, args, kwargs = pickle.loads(body)
    assert func is square and args == (3,) and kwargs == {"x": [1.5, "a"]}


def test_a_function_of_main_goes_by_value(main_module: types.ModuleType, cloudpickle_calls: list[object]) -> None:
    def triple(x: int) -> int:
        return 3 * x

    _in_main(main_module, triple, "triple")
    body = _seal((triple, (2,), {}))
    assert len(cloudpickle_calls) == 1
    del main_module.triple  # another process's __main__ does not have it
    func, args, _ = pickle.loads(body)
    assert func is not triple and func(*args) == 6


def test_an_object_of_a_main_class_goes_by_value(
    main_module: types.ModuleType, cloudpickle_calls: list[object]
) -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    _in_main(main_module, Point, "Point")
    body = _seal({"point": Point(4)})
    assert len(cloudpickle_calls) == 1
    del main_module.Point
    point = pickle.loads(body)["point"]
    assert type(point).__name__ == "Point" and point.x == 4  # by reference, it would not unpickle


@pytest.mark.parametrize("kind", ["lambda", "local function"])
def test_lambdas_and_local_functions_go_by_value(kind: str, cloudpickle_calls: list[object]) -> None:
    offset = 10

    def local(x: int) -> int:
        return x + offset

    func = (lambda x: x + offset) if kind == "lambda" else local
    body = _seal((func, (1,), {}))
    assert len(cloudpickle_calls) == 1
    assert pickle.loads(body)[0](1) == 11


def test_a_module_registered_to_go_by_value_goes_by_value(cloudpickle_calls: list[object]) -> None:
    cloudpickle.register_pickle_by_value(THIS)
    try:
        body = _seal((square, (3,), {}))
    finally:
        cloudpickle.unregister_pickle_by_value(THIS)
    assert len(cloudpickle_calls) == 1
    func = pickle.loads(body)[0]
    assert func is not square and func(3) == 9


def test_what_neither_pickler_can_take_names_the_call() -> None:
    import threading

    with pytest.raises(TypeError, match="cannot pickle the call"):
        _seal((square, (threading.Lock(),), {}))
