"""Errors: what the daemon answered (:class:`FerryError` and one subclass per error kind) and
what went wrong on this side of the socket (:class:`ClientError`)."""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "FerryException",
    "FerryError",
    "ParseError",
    "InvalidRequest",
    "MethodNotFound",
    "InvalidParams",
    "NotFound",
    "InvalidState",
    "AccessDenied",
    "LimitExceeded",
    "Unsupported",
    "LocalIO",
    "Pending",
    "Internal",
    "CallbackFailed",
    "ClientError",
    "SocketNotFound",
    "UnsafeSocket",
    "Disconnected",
    "CallTimeout",
    "ProtocolError",
    "NotActivated",
    "AutostartFailed",
    "error_from_wire",
]


class FerryException(Exception):
    """Base of every exception this package raises."""


class FerryError(FerryException):
    """The daemon answered a call with an error object (``{code, message, data}``).

    ``kind`` is ``data.kind`` when the daemon sent one (``not_found``, ``invalid_state``, …),
    else the kind the JSON-RPC code stands for; ``data`` is the error's ``data`` (``field``,
    ``state``, ``bits``, ``limit``, …), an empty dict when there was none.
    """

    #: The code this class stands for (``None`` on the base class).
    CODE: Optional[int] = None
    #: The ``data.kind`` this class stands for (``None`` on the base class).
    KIND: Optional[str] = None

    def __init__(
        self, code: int, message: str, kind: Optional[str] = None, data: Optional[Dict[str, Any]] = None
    ) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.kind = kind
        self.data: Dict[str, Any] = dict(data) if data else {}

    def to_wire(self) -> Dict[str, Any]:
        """The error object as the wire carries it."""
        out: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            out["data"] = dict(self.data)
        return out


class ParseError(FerryError):
    """-32700: the daemon could not parse the line as JSON."""

    CODE = -32700
    KIND = "parse_error"


class InvalidRequest(FerryError):
    """-32600: not a valid JSON-RPC request (or the line is longer than 1 MiB)."""

    CODE = -32600
    KIND = "invalid_request"


class MethodNotFound(FerryError):
    """-32601: the daemon does not know the method."""

    CODE = -32601
    KIND = "method_not_found"


class InvalidParams(FerryError):
    """-32602: a param is malformed or out of range; ``data["field"]`` names it."""

    CODE = -32602
    KIND = "invalid_params"


class NotFound(FerryError):
    """-32000: no such job for this caller."""

    CODE = -32000
    KIND = "not_found"


class InvalidState(FerryError):
    """-32001: the job's state forbids the operation (``data["state"]``)."""

    CODE = -32001
    KIND = "invalid_state"


class AccessDenied(FerryError):
    """-32002: the caller may not do this."""

    CODE = -32002
    KIND = "access_denied"


class LimitExceeded(FerryError):
    """-32003: a configured limit was reached (``data["limit"]`` names it)."""

    CODE = -32003
    KIND = "limit_exceeded"


class Unsupported(FerryError):
    """-32004: not supported (a URL scheme, an upload job, …)."""

    CODE = -32004
    KIND = "unsupported"


class LocalIO(FerryError):
    """-32005: the local file system refused (``data["path"]``, ``data["os_error"]``)."""

    CODE = -32005
    KIND = "local_io"


class Pending(FerryError):
    """-32006: the file has not finished yet (``E_PENDING``)."""

    CODE = -32006
    KIND = "pending"


class Internal(FerryError):
    """-32099: a bug in the daemon; the message says what failed."""

    CODE = -32099
    KIND = "internal"


class CallbackFailed(FerryError):
    """-32010: what a client answers when a callback raised (the daemon then retries)."""

    CODE = -32010
    KIND = "callback_failed"


_CLASSES: tuple[Type[FerryError], ...] = (
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    NotFound,
    InvalidState,
    AccessDenied,
    LimitExceeded,
    Unsupported,
    LocalIO,
    Pending,
    Internal,
    CallbackFailed,
)
_BY_KIND: Dict[str, Type[FerryError]] = {c.KIND: c for c in _CLASSES if c.KIND}
_BY_CODE: Dict[int, Type[FerryError]] = {c.CODE: c for c in _CLASSES if c.CODE is not None}


def error_from_wire(obj: Mapping[str, Any]) -> FerryError:
    """The exception for a wire error object: the class of its ``data.kind``, else of its code,
    else :class:`FerryError` itself (a code this version does not know)."""
    raw_code = obj.get("code")
    code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else 0
    raw_message = obj.get("message")
    message = raw_message if isinstance(raw_message, str) else "ferryd answered an error without a message"
    raw_data = obj.get("data")
    data: Dict[str, Any] = dict(raw_data) if isinstance(raw_data, dict) else {}
    raw_kind = data.get("kind")
    cls = _BY_KIND.get(raw_kind) if isinstance(raw_kind, str) else None
    if cls is None:
        cls = _BY_CODE.get(code, FerryError)
    kind = raw_kind if isinstance(raw_kind, str) else cls.KIND
    return cls(code, message, kind, data)


class ClientError(FerryException):
    """A failure on this side of the socket (nothing the daemon answered)."""


class SocketNotFound(ClientError):
    """No socket location could be determined, or nothing listens there."""


class UnsafeSocket(ClientError):
    """The socket may belong to another user: its directory has the wrong owner or mode, or the
    process listening on it runs as neither the caller nor root. Nothing was sent."""


class Disconnected(ClientError):
    """The connection to ferryd closed (or was closed) before the call was answered."""


class CallTimeout(ClientError, TimeoutError):
    """A call was not answered within the timeout the caller set; a late answer is ignored."""


class ProtocolError(ClientError):
    """The daemon sent something this client cannot read (not JSON, a line over the limit), or a
    request would exceed the protocol's 1 MiB line limit."""


class NotActivated(ClientError):
    """:func:`ferry_client.serve_handler` ran in a program ferryd did not start as a handler."""


class AutostartFailed(ClientError):
    """No daemon answered and the one started for the caller (``autostart=True``) could not be
    started or did not listen in time; the message quotes its cause."""
