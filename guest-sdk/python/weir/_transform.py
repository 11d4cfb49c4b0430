"""The transform interface and the ``@weir.transform`` decorator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypeVar, Union

from .config import Config

if TYPE_CHECKING:
    from .emit import Emitter
    from .record import Record
    from .timers import Timer
    from .windows import Window, WindowResult

__all__ = ["Transform", "transform", "ProcessFn"]

ProcessFn = Callable[["Record", "Emitter"], None]
"""A stateless transform: ``def f(record, out) -> None``."""


class Transform:
    """Base class of a transform with configuration, windows or custom
    aggregations.

    The host creates one instance per sandbox (``__init__`` receives the
    deployment's :class:`~weir.Config`; declare windows there) and calls
    :meth:`process` for each record, in offset order within a partition.
    Records of different partitions may be handled by different instances,
    so keep per-key facts in :mod:`weir.state`, not in attributes.

    Raising from ``__init__`` stops the deployment with the message
    (:class:`~weir.ConfigError` gives it exactly).
    """

    def __init__(self, config: Config) -> None:
        pass

    def process(self, record: Record, out: Emitter) -> None:
        """Handles one record: emit outputs, read and write state, add to
        windows. Raising rejects the record -- its outputs, window additions
        and state changes are discarded and the deployment's failure policy
        applies -- except :class:`~weir.Fatal`, which stops the deployment."""
        raise NotImplementedError(f"{type(self).__name__} does not implement process")

    def on_window(self, result: WindowResult, out: Emitter) -> None:
        """Turns a window result into outputs. The default emits nothing."""

    def on_timer(self, timer: Timer, out: Emitter) -> None:
        """Handles a timer set with :func:`weir.timers.set` that fired: emit
        outputs, read and write state, set timers. Raising drops the timer
        and counts a failure. The default emits nothing."""

    def reduce(self, window: Window, key: bytes, acc: bytes | None, values: list[bytes]) -> bytes:
        """Folds ``values`` into the accumulator of a custom window
        aggregation (``acc`` is ``None`` for a new window). Required by
        transforms that define ``custom()`` windows. Raising traps the
        instance."""
        raise NotImplementedError(f"window {window.id} uses a custom aggregation but {type(self).__name__} does not implement reduce")

    def merge(self, window: Window, key: bytes, a: bytes, b: bytes) -> bytes:
        """Combines the accumulators of two merging session windows (``a``
        is the earlier one). Required for custom session aggregations."""
        raise NotImplementedError(f"window {window.id} uses a custom session aggregation but {type(self).__name__} does not implement merge")


class _FunctionTransform(Transform):
    def __init__(self, config: Config, fn: ProcessFn) -> None:
        self.process = fn  # type: ignore[method-assign,assignment]


Target = Union[type, ProcessFn]
T = TypeVar("T", bound=Target)

_registered: list[Target] = []


def transform(target: T) -> T:
    """Marks the plugin's transform: a :class:`Transform` subclass (or any
    class whose constructor takes a :class:`~weir.Config` and that has
    ``process``), or a plain function ``f(record, out)``::

        @weir.transform
        def upper(record: weir.Record, out: weir.Emitter) -> None:
            out.emit(record.key, (record.value or b"").upper(), headers=record.headers)

    Use it once per plugin.
    """
    if not callable(target):
        raise TypeError("@weir.transform decorates a class or a function")
    if _registered and _registered[0] is not target:
        raise RuntimeError(f"@weir.transform used twice: {_registered[0]!r} and {target!r}")
    if not _registered:
        _registered.append(target)
    return target


def _factory(target: Target) -> Callable[[Config], Transform]:
    if isinstance(target, type):
        if not callable(getattr(target, "process", None)):
            raise TypeError(f"{target.__name__} has no process(record, out) method")
        return target
    return lambda config: _FunctionTransform(config, target)
