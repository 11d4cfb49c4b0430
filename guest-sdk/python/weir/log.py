"""Log lines, recorded by the host with the deployment's name (and rate
limited there)::

    weir.log.info(f"counted {n} words")

``print()`` works too: the SDK sends standard output to the host's log at
``info`` level and standard error at ``warn`` level, one line per entry (a
plugin has no real standard output).
"""

from __future__ import annotations

import sys
from typing import TextIO

from . import _host

__all__ = ["trace", "debug", "info", "warn", "error", "Level"]

Level = _host.log.Level
_log = _host.log.log
_TRACE = Level.TRACE
_DEBUG = Level.DEBUG
_INFO = Level.INFO
_WARN = Level.WARN
_ERROR = Level.ERROR

# True from the host's first call (init) on; before that -- while the
# component is being pre-initialised at build time -- there is no host to
# log to, and lines go to the build's real output.
_live = False


def trace(message: object) -> None:
    _log(_TRACE, str(message))


def debug(message: object) -> None:
    _log(_DEBUG, str(message))


def info(message: object) -> None:
    _log(_INFO, str(message))


def warn(message: object) -> None:
    _log(_WARN, str(message))


def error(message: object) -> None:
    _log(_ERROR, str(message))


class _LogStream:
    """A text stream that sends complete lines to the host's log."""

    def __init__(self, level: Level, fallback: TextIO) -> None:
        self._level = level
        self._fallback = fallback
        self._pending = ""

    def write(self, text: str) -> int:
        if not _live:
            return self._fallback.write(text)
        n = len(text)
        text = self._pending + text
        *lines, self._pending = text.split("\n")
        for line in lines:
            _log(self._level, line)
        if len(self._pending) > 4096:
            self.flush()
        return n

    def flush(self) -> None:
        if not _live:
            self._fallback.flush()
        elif self._pending:
            _log(self._level, self._pending)
            self._pending = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False


def _redirect_standard_streams() -> None:
    if not isinstance(sys.stdout, _LogStream):
        sys.stdout = _LogStream(_INFO, sys.stdout)
    if not isinstance(sys.stderr, _LogStream):
        sys.stderr = _LogStream(_WARN, sys.stderr)
