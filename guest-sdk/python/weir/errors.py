"""Errors that plugin code raises to reject a record or stop the deployment."""

from __future__ import annotations

__all__ = ["Reject", "Fatal", "ConfigError", "message_of"]


class Reject(Exception):
    """Rejects the current record with ``message``.

    The record goes to the deployment's failure policy (dead-letter, skip or
    stop), and everything done for it -- outputs, window additions, state
    changes -- is discarded. Any other exception raised by ``process`` or
    ``on_window`` is turned into a rejection too, with the message
    ``"ExceptionType: text"``; raise :class:`Reject` to choose the message
    exactly.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Fatal(Exception):
    """Stops the deployment on this partition without consuming further.

    For problems no record can fix (a broken invariant, bad configuration
    discovered late). The host reports ``message``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ValueError):
    """Bad deployment configuration. Raised from ``init`` (or a transform
    class's constructor) it stops the deployment with exactly this message;
    the :class:`~weir.Config` helpers raise it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def message_of(error: BaseException) -> str:
    """The message a caught exception becomes: the text of the SDK's own
    errors as is, ``"Type: text"`` for any other exception."""
    if isinstance(error, (Reject, Fatal, ConfigError)):
        return str(error)
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text else name
