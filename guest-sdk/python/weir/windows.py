"""Windowed aggregations computed by the host.

Declare windows in ``init`` (a transform class's constructor), feed them
from ``process`` with :meth:`Emitter.add_to_window
<weir.Emitter.add_to_window>`, and turn results into outputs in
``on_window``::

    @weir.transform
    class ClicksPerMinute(weir.Transform):
        def __init__(self, config: weir.Config) -> None:
            self.window = weir.WindowSpec.tumbling(60_000).grace_ms(5_000).count().define("clicks")

        def process(self, record: weir.Record, out: weir.Emitter) -> None:
            out.add_to_window(self.window, record.key or b"")

        def on_window(self, w: weir.WindowResult, out: weir.Emitter) -> None:
            out.emit(w.key, f'{{"start":{w.start},"end":{w.end},"count":{w.count}}}')

Semantics are those of Kafka Streams; see the ``weir:transform/windows``
interface in the WIT package for the exact rules.
"""

from __future__ import annotations

from . import _host
from .errors import ConfigError

__all__ = ["Window", "WindowSpec", "WindowResult", "Aggregation", "EmitMode"]

_w = _host.windows
Aggregation = _w.Aggregation
"""``COUNT``, ``SUM``, ``MIN``, ``MAX``, ``MEAN`` or ``CUSTOM``."""
EmitMode = _w.EmitMode
"""``ON_UPDATE`` or ``ON_CLOSE``."""


class Window:
    """A declared windowed aggregation (what ``define`` returned)."""

    __slots__ = ("id",)

    def __init__(self, id: int) -> None:
        self.id = id
        """The id the host assigned."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Window) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"Window({self.id})"


class WindowSpec:
    """How a window aggregation is shaped. Build with a kind constructor
    (:meth:`tumbling`, :meth:`hopping`, :meth:`sliding`, :meth:`session`),
    refine (each method returns a new spec), then :meth:`define`.

    Defaults: grace 0 ms, ``count``, emit on close, no idle close.
    """

    __slots__ = ("_kind", "_grace_ms", "_aggregation", "_emit", "_idle_close_ms")

    def __init__(self, kind: "_w.WindowKind") -> None:
        self._kind = kind
        self._grace_ms = 0
        self._aggregation = Aggregation.COUNT
        self._emit = EmitMode.ON_CLOSE
        self._idle_close_ms: int | None = None

    def _with(self, **changes: object) -> WindowSpec:
        spec = WindowSpec(self._kind)
        for name in WindowSpec.__slots__:
            setattr(spec, name, changes.get(name, getattr(self, name)))
        return spec

    @staticmethod
    def tumbling(size_ms: int) -> WindowSpec:
        """Epoch-aligned windows of ``size_ms``, back to back."""
        return WindowSpec(_w.WindowKind_Tumbling(_ms(size_ms)))

    @staticmethod
    def hopping(size_ms: int, advance_ms: int) -> WindowSpec:
        """Epoch-aligned windows of ``size_ms`` starting every ``advance_ms``."""
        return WindowSpec(_w.WindowKind_Hopping(_w.Hopping(_ms(size_ms), _ms(advance_ms))))

    @staticmethod
    def sliding(max_difference_ms: int) -> WindowSpec:
        """Windows covering every ``max_difference_ms`` span between values."""
        return WindowSpec(_w.WindowKind_Sliding(_ms(max_difference_ms)))

    @staticmethod
    def session(gap_ms: int) -> WindowSpec:
        """Per-key sessions of values at most ``gap_ms`` apart."""
        return WindowSpec(_w.WindowKind_Session(_ms(gap_ms)))

    @staticmethod
    def count_tumbling(count: int) -> WindowSpec:
        """Per key, windows of ``count`` values, back to back; a result's
        start and end are its first and last values' timestamps."""
        return WindowSpec(_w.WindowKind_CountTumbling(_ms(count)))

    @staticmethod
    def count_hopping(count: int, step: int) -> WindowSpec:
        """Per key, windows of ``count`` values starting every ``step`` values."""
        return WindowSpec(_w.WindowKind_CountHopping(_w.CountHopping(_ms(count), _ms(step))))

    def grace_ms(self, grace_ms: int) -> WindowSpec:
        """How long after its end a window accepts late values (default 0)."""
        return self._with(_grace_ms=_ms(grace_ms))

    def aggregation(self, aggregation: Aggregation) -> WindowSpec:
        return self._with(_aggregation=aggregation)

    def count(self) -> WindowSpec:
        return self.aggregation(Aggregation.COUNT)

    def sum(self) -> WindowSpec:
        return self.aggregation(Aggregation.SUM)

    def min(self) -> WindowSpec:
        return self.aggregation(Aggregation.MIN)

    def max(self) -> WindowSpec:
        return self.aggregation(Aggregation.MAX)

    def mean(self) -> WindowSpec:
        return self.aggregation(Aggregation.MEAN)

    def custom(self) -> WindowSpec:
        """Folded by the transform's ``reduce`` (and ``merge`` for sessions)."""
        return self.aggregation(Aggregation.CUSTOM)

    def emit_on_close(self) -> WindowSpec:
        """One result per window, when it closes (the default)."""
        return self._with(_emit=EmitMode.ON_CLOSE)

    def emit_on_update(self) -> WindowSpec:
        """A result every time a window changes."""
        return self._with(_emit=EmitMode.ON_UPDATE)

    def idle_close_ms(self, ms: int | None) -> WindowSpec:
        """Close a partition's windows after ``ms`` of wall-clock time
        without records (``None``: wait for stream time)."""
        return self._with(_idle_close_ms=None if ms is None else _ms(ms))

    def define(self, name: str) -> Window:
        """Declares the aggregation under ``name`` (stable across restarts
        and upgrades); call it from ``init``. A host refusal raises
        :class:`~weir.ConfigError`, which stops the deployment."""
        spec = _w.WindowSpec(self._kind, self._grace_ms, self._aggregation, self._emit, self._idle_close_ms)
        try:
            return Window(_w.define(name, spec))
        except _host.Err as e:
            raise ConfigError(str(e.value)) from None

    def __repr__(self) -> str:
        return (
            f"WindowSpec({self._kind!r}, grace_ms={self._grace_ms}, aggregation={self._aggregation}, "
            f"emit={self._emit}, idle_close_ms={self._idle_close_ms})"
        )


def _ms(value: int) -> int:
    if type(value) is not int:
        value = int(value)
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} ms is out of range")
    return value


class WindowResult:
    """The aggregate of one window, handed to ``on_window``."""

    __slots__ = ("window", "key", "start", "end", "count", "value", "custom", "closed")

    window: Window
    key: bytes
    """The aggregation key."""
    start: int
    """First instant in the window, ms."""
    end: int
    """Exclusive end for tumbling and hopping windows; the inclusive last
    instant for sliding and session windows (as Kafka Streams reports them)."""
    count: int
    """Number of values in the window."""
    value: float
    """The count, sum, min, max or mean (0 for custom aggregations)."""
    custom: bytes | None
    """The accumulator of a custom aggregation."""
    closed: bool
    """Whether this is the window's final result."""

    def __init__(
        self,
        window: Window,
        key: bytes,
        start: int,
        end: int,
        count: int,
        value: float,
        custom: bytes | None,
        closed: bool,
    ) -> None:
        self.window = window
        self.key = key
        self.start = start
        self.end = end
        self.count = count
        self.value = value
        self.custom = custom
        self.closed = closed

    @property
    def key_text(self) -> str | None:
        """The key as UTF-8 text (``None`` when not valid UTF-8)."""
        try:
            return self.key.decode()
        except UnicodeDecodeError:
            return None

    def __repr__(self) -> str:
        return (
            f"WindowResult(window={self.window!r}, key={self.key!r}, start={self.start}, end={self.end}, "
            f"count={self.count}, value={self.value}, custom={self.custom!r}, closed={self.closed})"
        )
