"""The synchronous client: one connection, one reader thread.

The reader thread matches answers to calls by id and serves the daemon's callback requests on
the same connection while the caller's own calls are pending: each callback runs on a thread
of its own, so a callback that is slow (or never returns) does not hold back any answer, and a
callback may call the daemon itself (typically ``job_complete`` from ``job_transferred``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Generator, Iterable, Optional, Sequence, Type, Union, cast

from . import _calls
from ._calls import SETTLED, wait_timeout
from .autostart import connect_or_start
from .errors import CallTimeout, Disconnected, FerryError, ProtocolError, SocketNotFound, error_from_wire
from .handler import Activation, Delivery, Handler, Registry, decode_callback, describe_failure
from .handler import no_handler, reset_delivery, set_delivery
from .transport import MAX_ANSWER_LINE, connect_unix, decode_message, encode_message, overlong
from .types import (
    AddFilesResult,
    CompleteResult,
    Empty,
    ErrorInfo,
    Event,
    EventsReadResult,
    File,
    FileSpec,
    FilesResult,
    HandlerAttachResult,
    HandlerListResult,
    HelloResult,
    Job,
    JobState,
    JobType,
    ListResult,
    Params,
    Priority,
    SetChanges,
    StateResult,
)

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .types import Unpack

__all__ = ["Client", "serve_handler", "follow_head", "SETTLED"]

log = logging.getLogger("ferry_client")

_PathLike = Union[str, "os.PathLike[str]"]

class _Slot:
    """Where the reader puts the answer to one call."""

    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[BaseException] = None


class Client:
    """A connection to ``ferryd``; a context manager that closes it on exit.

    ``socket_path`` defaults to what :func:`ferry_client.transport.find_socket` finds; the
    socket is vetted before a byte is sent (see :mod:`ferry_client.transport`). ``timeout`` is
    the default bound, in seconds, on each call (``None``: wait as long as the connection lives).
    With ``autostart=True``, a per-user ``ferryd`` (``daemon``, default ``FERRY_DAEMON`` or
    ``ferryd`` on ``PATH``, with the extra ``daemon_args``) is started when nothing answers on
    the socket, as the ``ferry`` CLI does (see :mod:`ferry_client.autostart`).
    """

    def __init__(
        self,
        socket_path: Optional[_PathLike] = None,
        *,
        timeout: Optional[float] = None,
        autostart: bool = False,
        daemon: Optional[_PathLike] = None,
        daemon_args: Sequence[str] = (),
    ) -> None:
        if autostart:
            self._sock, self.socket_path = connect_or_start(socket_path, daemon=daemon, daemon_args=daemon_args)
        else:
            self._sock, self.socket_path = connect_unix(socket_path)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._next_id = 1
        self._pending: Dict[int, _Slot] = {}
        self._closed = False
        self._why_closed = "the connection to ferryd closed before it answered (did the daemon stop?)"
        self._refusal: Optional[FerryError] = None
        self._registry = Registry()
        # Callbacks running, and when one last started or ended: a handler's idle clock.
        self._activity = threading.Condition(self._lock)
        self._in_flight = 0
        self._last_activity = time.monotonic()
        self._events: "queue.Queue[Optional[Event]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read_loop, name="ferry-client-reader", daemon=True)
        self._reader.start()

    # -- connection ---------------------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(socket_path={self.socket_path!r}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        """Whether the connection has closed (either side)."""
        with self._lock:
            return self._closed

    def close(self) -> None:
        """Closes the connection: pending calls fail with :class:`Disconnected`, and the daemon
        forgets this connection as a callback target or handler."""
        with self._lock:
            if not self._closed:
                self._why_closed = "the client was closed before ferryd answered"
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)
        self._sock.close()

    def _read_loop(self) -> None:
        reader = self._sock.makefile("rb")
        try:
            while True:
                line = reader.readline(MAX_ANSWER_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_ANSWER_LINE:
                    self._why_closed = overlong(MAX_ANSWER_LINE)
                    return
                message = decode_message(line)
                if message is not None:
                    self._route(message)
        except OSError:
            return
        finally:
            reader.close()
            self._shut()

    def _shut(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
            self._activity.notify_all()
        for slot in pending.values():
            slot.error = self._refusal or Disconnected(self._why_closed)
            slot.done.set()
        self._events.put(None)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _route(self, message: Dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str):
            call_id = message.get("id")
            if call_id is None:
                self._notification(method, message.get("params"))
            else:
                threading.Thread(
                    target=self._serve_request,
                    args=(call_id, method, message.get("params")),
                    name=f"ferry-client-{method}",
                    daemon=True,
                ).start()
            return
        call_id = message.get("id")
        error = message.get("error")
        if call_id is None:
            # An error about the connection itself (a limit or the daemon's access rule refused
            # it, before any call may have been made): every call in flight and every later one
            # gets it, instead of a bare "connection closed".
            if isinstance(error, dict):
                refusal = error_from_wire(error)
                with self._lock:
                    self._refusal = refusal
                    pending, self._pending = self._pending, {}
                for waiting in pending.values():
                    waiting.error = refusal
                    waiting.done.set()
            return
        with self._lock:
            slot = self._pending.pop(call_id) if call_id in self._pending else None
        if slot is None:
            return
        if isinstance(error, dict):
            slot.error = error_from_wire(error)
        else:
            slot.result = message.get("result")
        slot.done.set()

    def _notification(self, method: str, params: Any) -> None:
        if method == "events.event" and isinstance(params, dict) and isinstance(params.get("event"), dict):
            self._events.put(cast(Event, params["event"]))

    def _send(self, message: Dict[str, Any]) -> None:
        line = encode_message(message)
        with self._write_lock:
            try:
                self._sock.sendall(line)
            except OSError as e:
                raise Disconnected(f"cannot write to ferryd at {self.socket_path}: {e}") from e

    def _serve_request(self, call_id: Any, method: str, params: Any) -> None:
        try:
            delivery = decode_callback(method, params)
        except FerryError as e:
            self._answer(call_id, error=e.to_wire())
            return
        with self._lock:
            handler = self._registry.find(delivery.job_id)
            if handler is not None:
                self._in_flight += 1
                self._last_activity = time.monotonic()
                self._activity.notify_all()
        if handler is None:
            self._answer(call_id, error=no_handler(delivery.job_id))
            return
        try:
            error = _run_handler(handler, delivery)
            self._answer(call_id, error=error, result={})
        finally:
            with self._lock:
                self._in_flight -= 1
                self._last_activity = time.monotonic()
                self._activity.notify_all()

    def _answer(self, call_id: Any, result: Any = None, error: Any = None) -> None:
        try:
            self._send(_calls.reply(call_id, result, error))
        except (Disconnected, ProtocolError) as e:
            log.info("cannot answer a callback: %s", e)

    def wait_idle(self, idle: float) -> None:
        """Returns once no callback has started or ended for ``idle`` seconds and none is
        running, or the connection closed (a handler program's "nothing left to deliver")."""
        with self._activity:
            while not self._closed:
                if self._in_flight:
                    self._activity.wait()
                    continue
                remaining = self._last_activity + idle - time.monotonic()
                if remaining <= 0:
                    return
                self._activity.wait(remaining)

    # -- calls --------------------------------------------------------------------------------

    def call(self, method: str, params: Optional[Params] = None, *, timeout: Optional[float] = None) -> Any:
        """Calls any method with any params and returns the wire's result; raises a
        :class:`~ferry_client.FerryError` subclass when the daemon answers an error."""
        slot = _Slot()
        with self._lock:
            if self._closed:
                raise self._refusal or Disconnected(self._why_closed)
            call_id = self._next_id
            self._next_id += 1
            self._pending[call_id] = slot
        try:
            self._send(_calls.request(call_id, method, params if params is not None else {}))
        except Disconnected:
            with self._lock:
                self._pending.pop(call_id, None)
            # A daemon that refuses the connection writes why, then closes: the write may fail
            # before the reader has read the reason.
            if threading.current_thread() is not self._reader:
                self._reader.join(1.0)
            if self._refusal is not None:
                raise self._refusal from None
            raise
        except BaseException:
            with self._lock:
                self._pending.pop(call_id, None)
            raise
        limit = timeout if timeout is not None else self.timeout
        if not slot.done.wait(limit):
            with self._lock:
                self._pending.pop(call_id, None)
            raise CallTimeout(f"ferryd did not answer {method} within {limit} s")
        if slot.error is not None:
            raise slot.error
        return slot.result

    def ferry_hello(self, client: Optional[str] = None) -> HelloResult:
        """``ferry.hello``: the protocol version, the server, the caller's uid and the mode."""
        return cast(HelloResult, self.call("ferry.hello", _calls.present(client=client)))

    def job_create(
        self,
        display_name: str,
        type: Optional[JobType] = None,
        priority: Optional[Priority] = None,
        description: Optional[str] = None,
        files: Optional[Sequence[FileSpec]] = None,
    ) -> str:
        """``job.create``; returns the new job's id (the job starts ``suspended``). Many files go
        in batches (a request line may not exceed 1 MiB): the first with the create, the rest
        through ``job.add_files``; a batch that fails cancels the job, so none is left half made."""
        params, rest = _calls.create_plan(display_name, type, priority, description, files)
        job_id = cast(str, self.call("job.create", params)["job_id"])
        for batch in rest:
            try:
                self.job_add_files(job_id, batch)
            except BaseException:
                try:
                    self.job_cancel(job_id)
                except FerryError:
                    pass
                raise
        return job_id

    def job_add_files(self, job_id: str, files: Sequence[FileSpec]) -> AddFilesResult:
        """``job.add_files``: appends files to a suspended or running job."""
        return cast(AddFilesResult, self.call("job.add_files", {"job_id": job_id, "files": list(files)}))

    def job_get(self, job_id: str) -> Job:
        """``job.get``"""
        return cast(Job, self.call("job.get", {"job_id": job_id}))

    def job_files(self, job_id: str, from_: Optional[int] = None, limit: Optional[int] = None) -> FilesResult:
        """``job.files``; ``from_`` is the wire's ``from`` (the first file index). With ``limit``
        the result carries ``next`` while more files follow: page large jobs."""
        return cast(FilesResult, self.call("job.files", _calls.present(job_id=job_id, limit=limit, **{"from": from_})))

    def job_get_error(self, job_id: str) -> Optional[ErrorInfo]:
        """``job.get_error``: the job's current error, or ``None``."""
        return cast(Optional[ErrorInfo], self.call("job.get_error", {"job_id": job_id}))

    def job_list(
        self,
        all_users: Optional[bool] = None,
        states: Optional[Sequence[JobState]] = None,
        include_final: Optional[bool] = None,
        after: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> ListResult:
        """``job.list``: one page of jobs and the cursor of the next."""
        states_list = list(states) if states is not None else None
        params = _calls.present(
            all_users=all_users, states=states_list, include_final=include_final, after=after, limit=limit
        )
        return cast(ListResult, self.call("job.list", params))

    def job_resume(self, job_id: str) -> StateResult:
        """``job.resume``: queues the job for transfer."""
        return cast(StateResult, self.call("job.resume", {"job_id": job_id}))

    def job_suspend(self, job_id: str) -> StateResult:
        """``job.suspend``"""
        return cast(StateResult, self.call("job.suspend", {"job_id": job_id}))

    def job_cancel(self, job_id: str) -> StateResult:
        """``job.cancel``: deletes what was transferred; the job becomes final."""
        return cast(StateResult, self.call("job.cancel", {"job_id": job_id}))

    def job_complete(self, job_id: str) -> CompleteResult:
        """``job.complete``: hands the transferred files over at their local paths."""
        return cast(CompleteResult, self.call("job.complete", {"job_id": job_id}))

    def job_set(self, job_id: str, **changes: Unpack[SetChanges]) -> Job:
        """``job.set``: changes the properties given as keyword arguments (the wire's names);
        ``None`` clears a nullable one (the wire's ``null``). Returns the job."""
        return cast(Job, self.call("job.set", {"job_id": job_id, **changes}))

    def job_set_notify_interface(self, job_id: str, handler: Handler) -> Empty:
        """Registers ``handler`` for ``job_id`` on this connection, then makes the connection
        the job's live callback (``job.set_notify_interface``; the last caller wins).
        Registering first means a notification the daemon sends at once is served. The handler
        stays registered until :meth:`job_clear_notify_interface` or the connection closes."""
        handler._client = self
        with self._lock:
            previous = self._registry.set_job(job_id, handler)
        try:
            return cast(Empty, self.call("job.set_notify_interface", {"job_id": job_id}))
        except BaseException:
            with self._lock:
                self._registry.restore(job_id, previous)
            raise

    set_notify_interface = job_set_notify_interface

    def job_clear_notify_interface(self, job_id: str) -> Empty:
        """``job.clear_notify_interface``, then forgets the job's handler here (also when the
        daemon refused, e.g. for a job that no longer exists)."""
        try:
            return cast(Empty, self.call("job.clear_notify_interface", {"job_id": job_id}))
        finally:
            with self._lock:
                self._registry.clear_job(job_id)

    clear_notify_interface = job_clear_notify_interface

    def job_take_ownership(self, job_id: str) -> Job:
        """``job.take_ownership`` (root only)."""
        return cast(Job, self.call("job.take_ownership", {"job_id": job_id}))

    def file_set_validation_state(self, job_id: str, file_index: int, valid: bool) -> File:
        """``file.set_validation_state``: the application's verdict on a transferred file."""
        params = {"job_id": job_id, "file_index": file_index, "valid": valid}
        return cast(File, self.call("file.set_validation_state", params))

    def file_set_remote_url(self, job_id: str, file_index: int, remote_url: str) -> File:
        """``file.set_remote_url``: replaces the URL of a file not transferred yet (e.g. an
        expired presigned URL); its bytes are kept when the new URL serves the same content."""
        params = {"job_id": job_id, "file_index": file_index, "remote_url": remote_url}
        return cast(File, self.call("file.set_remote_url", params))

    def handler_register(self, name: str, argv: Sequence[str], activation_timeout_s: Optional[int] = None) -> Empty:
        """``handler.register``: ``argv[0]`` must be an absolute path."""
        params = _calls.present(name=name, argv=list(argv), activation_timeout_s=activation_timeout_s)
        return cast(Empty, self.call("handler.register", params))

    def handler_unregister(self, name: str) -> Empty:
        """``handler.unregister``"""
        return cast(Empty, self.call("handler.unregister", {"name": name}))

    def handler_list(self) -> HandlerListResult:
        """``handler.list``: the caller's registered handlers."""
        return cast(HandlerListResult, self.call("handler.list", {}))

    def handler_attach(self, name: str, token: Optional[str] = None, handler: Optional[Handler] = None) -> HandlerAttachResult:
        """``handler.attach``: this connection serves the callbacks of every job of the caller
        whose ``notify_handler`` is ``name`` (and that has no live callback), through
        ``handler`` (installed before attaching, since owed notifications flow at once)."""
        if handler is not None:
            handler._client = self
            with self._lock:
                self._registry.default = handler
        return cast(HandlerAttachResult, self.call("handler.attach", _calls.present(name=name, token=token)))

    def events_read(self, after: Optional[int] = None, job_id: Optional[str] = None, limit: Optional[int] = None) -> EventsReadResult:
        """``events.read``: a page of the event log after ``after``; pass ``next`` as the
        following ``after``."""
        return cast(EventsReadResult, self.call("events.read", _calls.present(after=after, job_id=job_id, limit=limit)))

    def events_follow(
        self, after: Optional[int] = None, job_id: Optional[str] = None, *, reconnect_timeout: float = 60.0
    ) -> Generator[Event, None, None]:
        """The event log as an iterator: events after ``after`` (without it, only new ones),
        then each as it happens. It follows on a connection of its own, and when the daemon
        goes away it reconnects (for up to ``reconnect_timeout`` seconds, then raises
        :class:`Disconnected`) and resumes after the last ``seq`` it yielded: no gap, no
        duplicate. Close the iterator (or leave the ``for`` loop) to stop."""
        start = after if after is not None else follow_head(self, job_id)
        return _follow(self.socket_path, start, job_id, reconnect_timeout)

    def wait_for(self, job_id: str, states: Optional[Iterable[JobState]] = None, *, timeout: Optional[float] = None) -> Job:
        """Waits until the job reaches one of ``states`` (default :data:`SETTLED`: final, or
        waiting for the owner to complete, resume or cancel it) and returns the job as read
        right after it did (it may have moved on since). Returns at once when it is there
        already. Driven by the job's events on a connection of its own, never by polling;
        raises :class:`CallTimeout` when ``timeout`` seconds pass first."""
        wanted = frozenset(states) if states is not None else SETTLED
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> Optional[float]:
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallTimeout(wait_timeout(job_id, wanted, timeout))
            return remaining

        with Client(self.socket_path) as watcher:
            try:
                # Following before the first read: no state change slips in between.
                watcher.call("events.follow", {"job_id": job_id}, timeout=left())
                job = cast(Job, watcher.call("job.get", {"job_id": job_id}, timeout=left()))
            except CallTimeout:
                raise CallTimeout(wait_timeout(job_id, wanted, timeout)) from None
            if job["state"] in wanted:
                return job
            while True:
                try:
                    event = watcher._events.get(timeout=left())
                except queue.Empty:
                    raise CallTimeout(wait_timeout(job_id, wanted, timeout)) from None
                if event is None:
                    raise Disconnected(f"the connection to ferryd closed while waiting for job {job_id}")
                if event.get("kind") == "state" and event.get("job_id") == job_id and event.get("to") in wanted:
                    return watcher.job_get(job_id)

    def cache_list(self) -> Dict[str, Any]:
        """``cache.list``: the peer cache's entries."""
        return cast(Dict[str, Any], self.call("cache.list", {}))

    def cache_info(self) -> Dict[str, Any]:
        """``cache.info``: the peer cache's settings and use."""
        return cast(Dict[str, Any], self.call("cache.info", {}))

    def cache_delete(self, key: Optional[str] = None, url: Optional[str] = None) -> Dict[str, Any]:
        """``cache.delete``: the entry with ``key``, or every entry downloaded from ``url``."""
        return cast(Dict[str, Any], self.call("cache.delete", _calls.present(key=key, url=url)))

    def events_unfollow(self) -> Dict[str, Any]:
        """``events.unfollow`` on this connection. :meth:`events_follow` follows on a connection of
        its own and stops when the iterator is closed; this is for a raw ``events.follow`` sent
        with :meth:`call`."""
        return cast(Dict[str, Any], self.call("events.unfollow", {}))

    def cache_clear(self) -> Dict[str, Any]:
        """``cache.clear``"""
        return cast(Dict[str, Any], self.call("cache.clear", {}))

    def daemon_conditions(self) -> Dict[str, Any]:
        """``daemon.conditions``: the network and power state the daemon sees (what its cost and
        power policies decide on)."""
        return cast(Dict[str, Any], self.call("daemon.conditions", {}))

    def peers_list(self) -> Dict[str, Any]:
        """``peers.list``: the peers this host knows and how they fared."""
        return cast(Dict[str, Any], self.call("peers.list", {}))


def _run_handler(handler: Handler, delivery: Delivery) -> Optional[Dict[str, Any]]:
    """Runs one callback on this thread; ``None`` on success, else the error to answer."""
    token = set_delivery(delivery.delivery_id)
    try:
        outcome = getattr(handler, delivery.method)(*delivery.args)
        if inspect.isawaitable(outcome):
            asyncio.run(_awaited(outcome))
        return None
    except Exception as e:  # noqa: BLE001 - any failure of the application's code is an answer
        return describe_failure(delivery, e)
    finally:
        reset_delivery(token)


async def _awaited(outcome: Any) -> None:
    await outcome


def follow_head(client: Client, job_id: Optional[str]) -> int:
    """The ``seq`` of the newest event the caller may read (0 when there is none): where a
    follow "from now" starts, so a reconnect can resume from it."""
    cursor: Optional[int] = 0
    while True:
        last = cursor or 0
        cursor = _calls.after_page(client.events_read(after=last, job_id=job_id, limit=_calls.EVENTS_PAGE), last)
        if cursor is None:
            return last


def _follow(path: str, after: int, job_id: Optional[str], reconnect_timeout: float) -> Generator[Event, None, None]:
    resume = _calls.Resume(path, after, reconnect_timeout)
    while True:
        try:
            conn = Client(path)
        except SocketNotFound:
            # The daemon is restarting: poll for its socket, within the deadline.
            time.sleep(resume.gone())
            continue
        try:
            conn.call("events.follow", resume.follow_params(job_id))
            resume.connected()
            for event in iter(conn._events.get, None):
                if resume.fresh(event):
                    yield event
        except Disconnected:
            pass
        finally:
            conn.close()
        time.sleep(resume.gone())


def serve_handler(handler: Handler, *, idle: float = 5.0) -> None:
    """What a program started by ferryd as a registered handler calls: connects to
    ``FERRY_SOCKET``, attaches as ``FERRY_HANDLER`` with the token ``FERRY_ACTIVATION``,
    answers callbacks with ``handler`` for every job of that handler, and returns once nothing
    has happened for ``idle`` seconds (nothing left to deliver) or the daemon closed the
    connection. Raises :class:`~ferry_client.NotActivated` outside an activation."""
    activation = Activation.from_env()
    with Client(activation.socket) as client:
        client.handler_attach(activation.name, activation.token, handler=handler)
        client.wait_idle(idle)
