"""Callbacks: the :class:`Handler` base class an application subclasses, and the decoding and
answering of the daemon's ``callback.*`` requests shared by :class:`ferry_client.Client` and
:class:`ferry_client.aio.AsyncClient`.

A callback method that returns normally is answered ``{}`` (success); one that raises is
answered with an error (code -32010, ``data.kind`` ``callback_failed``), after which the daemon
tries again later with the same ``delivery_id``, or falls through to the job's next target.
"""

from __future__ import annotations

import contextvars
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Dict, List, Mapping, Optional, Tuple

from .errors import CallbackFailed, InvalidParams, MethodNotFound, NotActivated
from .types import ErrorInfo, File, FileRange, Job

if TYPE_CHECKING:  # pragma: no cover - imports for annotations only
    from .aio import AsyncClient
    from .client import Client

__all__ = ["Handler", "Activation", "activated", "current_delivery_id"]

log = logging.getLogger("ferry_client")

#: The socket ferryd listens on (also read by every client).
ENV_SOCKET = "FERRY_SOCKET"
#: The handler name ferryd started the program as.
ENV_HANDLER = "FERRY_HANDLER"
#: The one-time activation token.
ENV_ACTIVATION = "FERRY_ACTIVATION"

_delivery: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar("ferry_delivery_id", default=None)


def current_delivery_id() -> Optional[str]:
    """The ``delivery_id`` of the callback running in this thread or task (the same on every
    retry of one notification, so handling can be made idempotent); ``None`` outside one."""
    return _delivery.get()


class Handler:
    """The notifications of a job, as BITS ``IBackgroundCopyCallback3`` has them.

    Subclass it and override what you want; every method acknowledges by default. A method may
    be a coroutine function (``async def``). Returning normally acknowledges the notification;
    raising makes the daemon retry it later. Keep callbacks short: at most 4 are outstanding per
    user, and one not answered within the daemon's callback timeout (60 s) counts as failed.
    The client the callback arrived on is :attr:`client` (or :attr:`aclient` on asyncio), for
    calls back to the daemon such as ``job_complete``.
    """

    _client: Optional["Client"] = None
    _aclient: Optional["AsyncClient"] = None

    @property
    def client(self) -> "Client":
        """The :class:`~ferry_client.Client` this handler serves on (set when it is registered
        with ``set_notify_interface`` or served by ``serve_handler``)."""
        if self._client is None:
            raise RuntimeError("this handler is not registered with a ferry_client.Client")
        return self._client

    @property
    def aclient(self) -> "AsyncClient":
        """The :class:`~ferry_client.aio.AsyncClient` this handler serves on."""
        if self._aclient is None:
            raise RuntimeError("this handler is not registered with a ferry_client.aio.AsyncClient")
        return self._aclient

    def job_transferred(self, job: Job) -> Optional[Awaitable[None]]:
        """``callback.job_transferred``: every file arrived; usually answered by ``job_complete``."""
        return None

    def job_error(self, job: Job, error: ErrorInfo) -> Optional[Awaitable[None]]:
        """``callback.job_error``: the job reached ``error`` (never for transient errors)."""
        return None

    def job_modification(self, job: Job) -> Optional[Awaitable[None]]:
        """``callback.job_modification``: something about the job changed (coalesced, not retried)."""
        return None

    def file_transferred(self, job: Job, file: File) -> Optional[Awaitable[None]]:
        """``callback.file_transferred``: one file finished; per job one at a time, in index order."""
        return None

    def file_ranges_transferred(self, job: Job, file: File, ranges: List[FileRange]) -> Optional[Awaitable[None]]:
        """``callback.file_ranges_transferred``: ranges of a ranged file arrived (coalesced)."""
        return None


@dataclass(frozen=True)
class Delivery:
    """One decoded callback request: which :class:`Handler` method to call, with what."""

    delivery_id: str
    job_id: str
    method: str
    args: Tuple[Any, ...]


_CALLBACKS: Dict[str, Tuple[str, ...]] = {
    "callback.job_transferred": ("job",),
    "callback.job_modification": ("job",),
    "callback.job_error": ("job", "error"),
    "callback.file_transferred": ("job", "file"),
    "callback.file_ranges_transferred": ("job", "file", "ranges"),
}


def decode_callback(method: str, params: Any) -> Delivery:
    """Decodes a ``callback.*`` request; raises :class:`MethodNotFound` for any other method
    and :class:`InvalidParams` (naming the field) for malformed params. Unknown fields are
    ignored, so a newer daemon adding one does not make every delivery fail."""
    fields = _CALLBACKS.get(method)
    if fields is None:
        raise MethodNotFound(MethodNotFound.CODE or 0, f"this client does not serve {method}", MethodNotFound.KIND)
    if not isinstance(params, dict):
        raise _invalid("params", "params must be a JSON object")
    delivery_id = params.get("delivery_id")
    if not isinstance(delivery_id, str) or not delivery_id:
        raise _invalid("delivery_id", "missing or empty")
    job = params.get("job")
    if not isinstance(job, dict) or not isinstance(job.get("job_id"), str) or not job["job_id"]:
        raise _invalid("job.job_id", "missing or empty")
    args: List[Any] = [job]
    for name in fields[1:]:
        value = params.get(name)
        if name == "error" and value is None:
            value = job.get("error")
        if name == "ranges" and value is None:
            value = []
        expected = list if name == "ranges" else dict
        if not isinstance(value, expected):
            raise _invalid(name, "missing or of the wrong type")
        args.append(value)
    return Delivery(delivery_id, job["job_id"], method[len("callback."):], tuple(args))


def _invalid(field: str, why: str) -> InvalidParams:
    return InvalidParams(
        InvalidParams.CODE or 0, f"invalid params: `{field}`: {why}", InvalidParams.KIND, {"field": field}
    )


def failure(message: str) -> Dict[str, Any]:
    """The error object answered for a failed callback."""
    return CallbackFailed(CallbackFailed.CODE or 0, message, CallbackFailed.KIND, {"kind": "callback_failed"}).to_wire()


def describe_failure(delivery: Delivery, exc: BaseException) -> Dict[str, Any]:
    """The error object for a callback that raised ``exc``; its text reaches the daemon's
    ``notification`` event, so it names the callback, the job and the exception."""
    log.warning("the %s callback for job %s raised %r", delivery.method, delivery.job_id, exc)
    return failure(f"the {delivery.method} callback for job {delivery.job_id} raised {type(exc).__name__}: {exc}")


class Registry:
    """The handlers of one connection: per job, and the default for every other job (a
    handler program's). Ids are UUIDs the daemon sends in lowercase; a caller may have typed
    capitals, so keys are lowercased."""

    def __init__(self) -> None:
        self.jobs: Dict[str, Handler] = {}
        self.default: Optional[Handler] = None

    def set_job(self, job_id: str, handler: Handler) -> Optional[Handler]:
        """Registers ``handler`` for ``job_id``; returns the one it replaces."""
        previous = self.jobs.get(job_id.lower())
        self.jobs[job_id.lower()] = handler
        return previous

    def clear_job(self, job_id: str) -> None:
        """Forgets the handler of ``job_id``."""
        self.jobs.pop(job_id.lower(), None)

    def restore(self, job_id: str, previous: Optional[Handler]) -> None:
        """Puts back what :meth:`set_job` replaced (the daemon refused the registration)."""
        if previous is None:
            self.clear_job(job_id)
        else:
            self.jobs[job_id.lower()] = previous

    def find(self, job_id: str) -> Optional[Handler]:
        """The handler that serves ``job_id``."""
        return self.jobs.get(job_id.lower(), self.default)


def no_handler(job_id: str) -> Dict[str, Any]:
    """The error object for a callback about a job this connection has no handler for."""
    return failure(f"this connection has no callback for job {job_id}")


@dataclass(frozen=True)
class Activation:
    """What ferryd's handler activation put in the environment."""

    socket: str
    name: str
    token: str

    @staticmethod
    def from_env(env: Optional[Mapping[str, str]] = None) -> "Activation":
        """Reads the activation; raises :class:`NotActivated` naming a missing variable."""
        env = os.environ if env is None else env
        values = []
        # The token is checked first: it is what only an activation sets.
        for key in (ENV_ACTIVATION, ENV_HANDLER, ENV_SOCKET):
            value = env.get(key, "")
            if not value:
                raise NotActivated(
                    f"not started by ferryd handler activation: {key} is not set "
                    "(a program that is already running attaches with Client.handler_attach)"
                )
            values.append(value)
        token, name, socket = values
        return Activation(socket=socket, name=name, token=token)


def activated(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ferryd started this process as a handler (``FERRY_ACTIVATION`` is set)."""
    env = os.environ if env is None else env
    return bool(env.get(ENV_ACTIVATION, ""))


def set_delivery(delivery_id: str) -> "contextvars.Token[Optional[str]]":
    """Makes ``delivery_id`` what :func:`current_delivery_id` returns in this context."""
    return _delivery.set(delivery_id)


def reset_delivery(token: "contextvars.Token[Optional[str]]") -> None:
    """Undoes :func:`set_delivery`."""
    _delivery.reset(token)
