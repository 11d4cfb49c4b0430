"""The deployment's configuration, and parsers whose errors read like the
Rust SDK's (so a plugin reports the same message in every language)."""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

from .errors import ConfigError

__all__ = ["Config", "u64", "i64", "u32", "i32", "f64", "boolean"]

T = TypeVar("T")


class Config:
    """Key/value strings of the deployment spec (or of ``weir test -c
    KEY=VALUE``). A key given twice takes its last value.

    >>> c = Config([("n", "1"), ("n", "2")])
    >>> c.get("n"), c.parse("n", u64), c.parse_or("m", u64, 7)
    ('2', 2, 7)
    """

    __slots__ = ("_entries", "_last")

    def __init__(self, entries: list[tuple[str, str]] | None = None) -> None:
        self._entries: list[tuple[str, str]] = list(entries or ())
        self._last: dict[str, str] = dict(self._entries)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default`` when it is unset."""
        return self._last.get(key, default)

    def require(self, key: str) -> str:
        """The value of ``key``; a :class:`ConfigError` naming it when unset."""
        value = self._last.get(key)
        if value is None:
            raise ConfigError(f"config `{key}` is required")
        return value

    def parse(self, key: str, conv: Callable[[str], T]) -> T | None:
        """``conv(value)`` of the trimmed value of ``key``; ``None`` when
        unset. A conversion error (``ValueError``) becomes a
        :class:`ConfigError` naming key and value: ``config `n` = `x`:
        invalid digit found in string``. ``conv`` is one of this module's
        parsers (:func:`u64`, :func:`i64`, :func:`f64`, :func:`boolean`...)
        or any callable such as ``int``."""
        value = self._last.get(key)
        if value is None:
            return None
        try:
            return conv(value.strip())
        except ValueError as e:
            raise ConfigError(f"config `{key}` = `{value}`: {e}") from None

    def parse_or(self, key: str, conv: Callable[[str], T], default: T) -> T:
        """Like :meth:`parse`, with ``default`` for an unset key."""
        value = self.parse(key, conv)
        return default if value is None else value

    def items(self) -> Iterator[tuple[str, str]]:
        """Every ``(key, value)`` entry in the order given, repeats included."""
        return iter(self._entries)

    def keys(self) -> Iterator[str]:
        return iter(self._last)

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def __getitem__(self, key: str) -> str:
        return self.require(key)

    def __len__(self) -> int:
        return len(self._last)

    def __repr__(self) -> str:
        return f"Config({self._entries!r})"


def _integer(bits: int, signed: bool) -> Callable[[str], int]:
    lo = -(1 << (bits - 1)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def parse(text: str) -> int:
        if not text:
            raise ValueError("cannot parse integer from empty string")
        digits = text[1:] if text[0] in "+-" else text
        if not digits or not (digits.isascii() and digits.isdigit()) or (text[0] == "-" and not signed):
            raise ValueError("invalid digit found in string")
        n = int(text)
        if n > hi:
            raise ValueError("number too large to fit in target type")
        if n < lo:
            raise ValueError("number too small to fit in target type")
        return n

    parse.__name__ = ("i" if signed else "u") + str(bits)
    parse.__doc__ = f"Parses a{'n' if signed else ''} {'signed' if signed else 'unsigned'} {bits}-bit integer like Rust's ``str::parse``."
    return parse


u64 = _integer(64, False)
i64 = _integer(64, True)
u32 = _integer(32, False)
i32 = _integer(32, True)


def f64(text: str) -> float:
    """Parses a float like Rust's ``str::parse::<f64>``."""
    if not text:
        raise ValueError("cannot parse float from empty string")
    if "_" in text or not text.isascii():
        raise ValueError("invalid float literal")
    try:
        return float(text)
    except ValueError:
        raise ValueError("invalid float literal") from None


def boolean(text: str) -> bool:
    """``true`` or ``false``, like Rust's ``str::parse::<bool>``."""
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError("provided string was not `true` or `false`")
