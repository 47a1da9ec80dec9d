"""The asyncio client: the same API as :class:`ferry_client.Client`, with ``async with``,
``await`` on every call and ``async for`` over :meth:`AsyncClient.events_follow`.

One reader task matches answers to calls by id and serves the daemon's callback requests while
the caller's own calls are pending: each callback runs as a task of its own. A handler method
that is a coroutine function runs on the event loop; a plain one runs in the loop's default
executor, so a blocking callback never stalls the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import os
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, AsyncGenerator, Dict, FrozenSet, Iterable, Optional, Sequence, Set, Type, Union, cast

from . import _calls
from . import types as t
from .autostart import connect_or_start
from ._calls import SETTLED, wait_timeout
from .errors import CallTimeout, Disconnected, FerryError, ProtocolError, SocketNotFound, error_from_wire
from .handler import Activation, Delivery, Handler, Registry, decode_callback, describe_failure
from .handler import no_handler, reset_delivery, set_delivery
from .transport import MAX_ANSWER_LINE, connect_unix, decode_message, encode_message, overlong

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .types import Unpack

__all__ = ["AsyncClient", "serve_handler"]

log = logging.getLogger("ferry_client")

_PathLike = Union[str, "os.PathLike[str]"]


class AsyncClient:
    """A connection to ``ferryd`` on asyncio; use ``async with AsyncClient() as client`` (or
    ``await AsyncClient.connect()``). Arguments as :class:`ferry_client.Client`."""

    def __init__(
        self,
        socket_path: Optional[_PathLike] = None,
        *,
        timeout: Optional[float] = None,
        autostart: bool = False,
        daemon: Optional[_PathLike] = None,
        daemon_args: Sequence[str] = (),
    ) -> None:
        self._path = socket_path
        self._autostart = autostart
        self._daemon = daemon
        self._daemon_args = tuple(daemon_args)
        self.socket_path = ""
        self.timeout = timeout
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._drain_lock: Optional[asyncio.Lock] = None
        self._next_id = 1
        self._pending: Dict[int, "asyncio.Future[Any]"] = {}
        self._closed = False
        self._why_closed = "the connection to ferryd closed before it answered (did the daemon stop?)"
        self._refusal: Optional[FerryError] = None
        self._registry = Registry()
        self._callbacks: Set["asyncio.Task[None]"] = set()
        self._in_flight = 0
        self._last_activity = time.monotonic()
        self._changed: Optional[asyncio.Event] = None
        self._events: "Optional[asyncio.Queue[Optional[t.Event]]]" = None

    @classmethod
    async def connect(
        cls,
        socket_path: Optional[_PathLike] = None,
        *,
        timeout: Optional[float] = None,
        autostart: bool = False,
        daemon: Optional[_PathLike] = None,
        daemon_args: Sequence[str] = (),
    ) -> "AsyncClient":
        """Connects (vetting the socket before a byte is sent) and returns the client."""
        client = cls(socket_path, timeout=timeout, autostart=autostart, daemon=daemon, daemon_args=daemon_args)
        await client._connect()
        return client

    async def _connect(self) -> None:
        if self._autostart:
            # Starting a daemon waits for it to listen: off the event loop.
            start = functools.partial(connect_or_start, self._path, daemon=self._daemon, daemon_args=self._daemon_args)
            sock, self.socket_path = await asyncio.get_running_loop().run_in_executor(None, start)
        else:
            # A Unix socket connects at once, so the vetted blocking connect is fine here.
            sock, self.socket_path = connect_unix(self._path)
        sock.setblocking(False)
        self._reader, self._writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_ANSWER_LINE)
        self._drain_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._events = asyncio.Queue()
        self._task = asyncio.ensure_future(self._read_loop())

    async def __aenter__(self) -> "AsyncClient":
        if self._writer is None:
            await self._connect()
        return self

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient(socket_path={self.socket_path!r}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        """Whether the connection has closed (either side)."""
        return self._closed

    async def close(self) -> None:
        """Closes the connection; pending calls fail with :class:`Disconnected`."""
        if not self._closed:
            self._why_closed = "the client was closed before ferryd answered"
        if self._writer is not None:
            self._writer.close()
        if self._task is not None and self._task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        self._shut()

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self._refusal or Disconnected(self._why_closed))
        if self._events is not None:
            self._events.put_nowait(None)
        if self._changed is not None:
            self._changed.set()
        if self._writer is not None:
            self._writer.close()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                try:
                    line = await self._reader.readline()
                except ValueError:
                    self._why_closed = overlong(MAX_ANSWER_LINE)
                    return
                if not line:
                    return
                message = decode_message(line)
                if message is not None:
                    self._route(message)
        except (OSError, asyncio.IncompleteReadError):
            return
        finally:
            self._shut()

    def _route(self, message: Dict[str, Any]) -> None:
        method = message.get("method")
        call_id = message.get("id")
        if isinstance(method, str):
            if call_id is None:
                params = message.get("params")
                if method == "events.event" and isinstance(params, dict) and isinstance(params.get("event"), dict):
                    assert self._events is not None
                    self._events.put_nowait(cast(t.Event, params["event"]))
                return
            task = asyncio.ensure_future(self._serve_request(call_id, method, message.get("params")))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)
            return
        error = message.get("error")
        if call_id is None:
            # An error about the connection itself: every call in flight and every later one
            # gets it.
            if isinstance(error, dict):
                self._refusal = error_from_wire(error)
                pending, self._pending = self._pending, {}
                for waiting in pending.values():
                    if not waiting.done():
                        waiting.set_exception(self._refusal)
            return
        fut = self._pending.pop(call_id) if call_id in self._pending else None
        if fut is None or fut.done():
            return
        if isinstance(error, dict):
            fut.set_exception(error_from_wire(error))
        else:
            fut.set_result(message.get("result"))

    async def _send(self, message: Dict[str, Any]) -> None:
        line = encode_message(message)
        if self._writer is None or self._drain_lock is None:
            raise Disconnected("the client is not connected: use `async with AsyncClient()` or AsyncClient.connect()")
        try:
            self._writer.write(line)
            async with self._drain_lock:
                await self._writer.drain()
        except (OSError, RuntimeError) as e:
            raise Disconnected(f"cannot write to ferryd at {self.socket_path}: {e}") from e

    def _touch(self, delta: int) -> None:
        self._in_flight += delta
        self._last_activity = time.monotonic()
        if self._changed is not None:
            self._changed.set()

    async def _serve_request(self, call_id: Any, method: str, params: Any) -> None:
        try:
            delivery = decode_callback(method, params)
        except FerryError as e:
            await self._answer(call_id, error=e.to_wire())
            return
        handler = self._registry.find(delivery.job_id)
        if handler is None:
            await self._answer(call_id, error=no_handler(delivery.job_id))
            return
        self._touch(1)
        try:
            error = await _run_handler(handler, delivery)
            await self._answer(call_id, error=error, result={})
        finally:
            self._touch(-1)

    async def _answer(self, call_id: Any, result: Any = None, error: Any = None) -> None:
        try:
            await self._send(_calls.reply(call_id, result, error))
        except (Disconnected, ProtocolError) as e:
            log.info("cannot answer a callback: %s", e)

    async def wait_idle(self, idle: float) -> None:
        """Returns once no callback has started or ended for ``idle`` seconds and none is
        running, or the connection closed."""
        assert self._changed is not None
        while not self._closed:
            self._changed.clear()
            if self._in_flight:
                await self._changed.wait()
                continue
            remaining = self._last_activity + idle - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # -- calls --------------------------------------------------------------------------------

    async def call(self, method: str, params: Optional[t.Params] = None, *, timeout: Optional[float] = None) -> Any:
        """Calls any method with any params and returns the wire's result; raises a
        :class:`~ferry_client.FerryError` subclass when the daemon answers an error."""
        if self._closed:
            raise self._refusal or Disconnected(self._why_closed)
        call_id = self._next_id
        self._next_id += 1
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self._pending[call_id] = fut
        try:
            await self._send(_calls.request(call_id, method, params if params is not None else {}))
        except Disconnected:
            self._pending.pop(call_id, None)
            # A daemon that refuses the connection writes why, then closes.
            if self._task is not None and self._task is not asyncio.current_task():
                await asyncio.wait([self._task], timeout=1.0)
            if self._refusal is not None:
                raise self._refusal from None
            raise
        except BaseException:
            self._pending.pop(call_id, None)
            raise
        limit = timeout if timeout is not None else self.timeout
        try:
            return await asyncio.wait_for(fut, limit)
        except asyncio.TimeoutError:
            self._pending.pop(call_id, None)
            raise CallTimeout(f"ferryd did not answer {method} within {limit} s") from None

    async def ferry_hello(self, client: Optional[str] = None) -> t.HelloResult:
        """``ferry.hello``"""
        return cast(t.HelloResult, await self.call("ferry.hello", _calls.present(client=client)))

    async def job_create(
        self,
        display_name: str,
        type: Optional[t.JobType] = None,
        priority: Optional[t.Priority] = None,
        description: Optional[str] = None,
        files: Optional[Sequence[t.FileSpec]] = None,
    ) -> str:
        """``job.create``; returns the new job's id. Many files go in batches, as in
        :meth:`ferry_client.Client.job_create`."""
        params, rest = _calls.create_plan(display_name, type, priority, description, files)
        job_id = cast(str, (await self.call("job.create", params))["job_id"])
        for batch in rest:
            try:
                await self.job_add_files(job_id, batch)
            except BaseException:
                try:
                    await self.job_cancel(job_id)
                except FerryError:
                    pass
                raise
        return job_id

    async def job_add_files(self, job_id: str, files: Sequence[t.FileSpec]) -> t.AddFilesResult:
        """``job.add_files``"""
        return cast(t.AddFilesResult, await self.call("job.add_files", {"job_id": job_id, "files": list(files)}))

    async def job_get(self, job_id: str) -> t.Job:
        """``job.get``"""
        return cast(t.Job, await self.call("job.get", {"job_id": job_id}))

    async def job_files(self, job_id: str, from_: Optional[int] = None, limit: Optional[int] = None) -> t.FilesResult:
        """``job.files``; ``from_`` is the wire's ``from``."""
        params = _calls.present(job_id=job_id, limit=limit, **{"from": from_})
        return cast(t.FilesResult, await self.call("job.files", params))

    async def job_get_error(self, job_id: str) -> Optional[t.ErrorInfo]:
        """``job.get_error``"""
        return cast(Optional[t.ErrorInfo], await self.call("job.get_error", {"job_id": job_id}))

    async def job_list(
        self,
        all_users: Optional[bool] = None,
        states: Optional[Sequence[t.JobState]] = None,
        include_final: Optional[bool] = None,
        after: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> t.ListResult:
        """``job.list``"""
        states_list = list(states) if states is not None else None
        params = _calls.present(
            all_users=all_users, states=states_list, include_final=include_final, after=after, limit=limit
        )
        return cast(t.ListResult, await self.call("job.list", params))

    async def job_resume(self, job_id: str) -> t.StateResult:
        """``job.resume``"""
        return cast(t.StateResult, await self.call("job.resume", {"job_id": job_id}))

    async def job_suspend(self, job_id: str) -> t.StateResult:
        """``job.suspend``"""
        return cast(t.StateResult, await self.call("job.suspend", {"job_id": job_id}))

    async def job_cancel(self, job_id: str) -> t.StateResult:
        """``job.cancel``"""
        return cast(t.StateResult, await self.call("job.cancel", {"job_id": job_id}))

    async def job_complete(self, job_id: str) -> t.CompleteResult:
        """``job.complete``"""
        return cast(t.CompleteResult, await self.call("job.complete", {"job_id": job_id}))

    async def job_set(self, job_id: str, **changes: Unpack[t.SetChanges]) -> t.Job:
        """``job.set``: ``None`` clears a nullable property."""
        return cast(t.Job, await self.call("job.set", {"job_id": job_id, **changes}))

    async def job_set_notify_interface(self, job_id: str, handler: Handler) -> t.Empty:
        """Registers ``handler`` for ``job_id`` here, then ``job.set_notify_interface``."""
        handler._aclient = self
        previous = self._registry.set_job(job_id, handler)
        try:
            return cast(t.Empty, await self.call("job.set_notify_interface", {"job_id": job_id}))
        except BaseException:
            self._registry.restore(job_id, previous)
            raise

    set_notify_interface = job_set_notify_interface

    async def job_clear_notify_interface(self, job_id: str) -> t.Empty:
        """``job.clear_notify_interface``, then forgets the job's handler here."""
        try:
            return cast(t.Empty, await self.call("job.clear_notify_interface", {"job_id": job_id}))
        finally:
            self._registry.clear_job(job_id)

    clear_notify_interface = job_clear_notify_interface

    async def job_take_ownership(self, job_id: str) -> t.Job:
        """``job.take_ownership`` (root only)."""
        return cast(t.Job, await self.call("job.take_ownership", {"job_id": job_id}))

    async def file_set_validation_state(self, job_id: str, file_index: int, valid: bool) -> t.File:
        """``file.set_validation_state``"""
        params = {"job_id": job_id, "file_index": file_index, "valid": valid}
        return cast(t.File, await self.call("file.set_validation_state", params))

    async def file_set_remote_url(self, job_id: str, file_index: int, remote_url: str) -> t.File:
        """``file.set_remote_url``"""
        params = {"job_id": job_id, "file_index": file_index, "remote_url": remote_url}
        return cast(t.File, await self.call("file.set_remote_url", params))

    async def handler_register(self, name: str, argv: Sequence[str], activation_timeout_s: Optional[int] = None) -> t.Empty:
        """``handler.register``"""
        params = _calls.present(name=name, argv=list(argv), activation_timeout_s=activation_timeout_s)
        return cast(t.Empty, await self.call("handler.register", params))

    async def handler_unregister(self, name: str) -> t.Empty:
        """``handler.unregister``"""
        return cast(t.Empty, await self.call("handler.unregister", {"name": name}))

    async def handler_list(self) -> t.HandlerListResult:
        """``handler.list``"""
        return cast(t.HandlerListResult, await self.call("handler.list", {}))

    async def handler_attach(
        self, name: str, token: Optional[str] = None, handler: Optional[Handler] = None
    ) -> t.HandlerAttachResult:
        """``handler.attach``, serving through ``handler`` (installed before attaching)."""
        if handler is not None:
            handler._aclient = self
            self._registry.default = handler
        return cast(t.HandlerAttachResult, await self.call("handler.attach", _calls.present(name=name, token=token)))

    async def events_read(
        self, after: Optional[int] = None, job_id: Optional[str] = None, limit: Optional[int] = None
    ) -> t.EventsReadResult:
        """``events.read``"""
        params = _calls.present(after=after, job_id=job_id, limit=limit)
        return cast(t.EventsReadResult, await self.call("events.read", params))

    def events_follow(
        self, after: Optional[int] = None, job_id: Optional[str] = None, *, reconnect_timeout: float = 60.0
    ) -> AsyncGenerator[t.Event, None]:
        """The event log as an async iterator, surviving daemon restarts with no gap and no
        duplicate, as :meth:`ferry_client.Client.events_follow`."""
        return _follow(self, after, job_id, reconnect_timeout)

    async def wait_for(
        self, job_id: str, states: Optional[Iterable[t.JobState]] = None, *, timeout: Optional[float] = None
    ) -> t.Job:
        """:meth:`ferry_client.Client.wait_for` on asyncio: driven by the job's events on a
        connection of its own; raises :class:`CallTimeout` when ``timeout`` seconds pass first."""
        wanted = frozenset(states) if states is not None else SETTLED
        try:
            return await asyncio.wait_for(self._wait(job_id, wanted), timeout)
        except asyncio.TimeoutError:
            raise CallTimeout(wait_timeout(job_id, wanted, timeout)) from None

    async def _wait(self, job_id: str, wanted: FrozenSet[t.JobState]) -> t.Job:
        async with AsyncClient(self.socket_path) as watcher:
            # Following before the first read: no state change slips in between.
            await watcher.call("events.follow", {"job_id": job_id})
            job = await watcher.job_get(job_id)
            if job["state"] in wanted:
                return job
            assert watcher._events is not None
            while True:
                event = await watcher._events.get()
                if event is None:
                    raise Disconnected(f"the connection to ferryd closed while waiting for job {job_id}")
                if event.get("kind") == "state" and event.get("job_id") == job_id and event.get("to") in wanted:
                    return await watcher.job_get(job_id)

    async def cache_list(self) -> Dict[str, Any]:
        """``cache.list``"""
        return cast(Dict[str, Any], await self.call("cache.list", {}))

    async def cache_info(self) -> Dict[str, Any]:
        """``cache.info``"""
        return cast(Dict[str, Any], await self.call("cache.info", {}))

    async def cache_delete(self, key: Optional[str] = None, url: Optional[str] = None) -> Dict[str, Any]:
        """``cache.delete``"""
        return cast(Dict[str, Any], await self.call("cache.delete", _calls.present(key=key, url=url)))

    async def events_unfollow(self) -> Dict[str, Any]:
        """``events.unfollow`` on this connection (for a raw ``events.follow`` sent with
        :meth:`call`; :meth:`events_follow` uses a connection of its own)."""
        return cast(Dict[str, Any], await self.call("events.unfollow", {}))

    async def cache_clear(self) -> Dict[str, Any]:
        """``cache.clear``"""
        return cast(Dict[str, Any], await self.call("cache.clear", {}))

    async def daemon_conditions(self) -> Dict[str, Any]:
        """``daemon.conditions``: the network and power state the daemon sees (what its cost and
        power policies decide on)."""
        return cast(Dict[str, Any], await self.call("daemon.conditions", {}))

    async def peers_list(self) -> Dict[str, Any]:
        """``peers.list``"""
        return cast(Dict[str, Any], await self.call("peers.list", {}))


async def _run_handler(handler: Handler, delivery: Delivery) -> Optional[Dict[str, Any]]:
    """Runs one callback; ``None`` on success, else the error to answer."""
    token = set_delivery(delivery.delivery_id)
    try:
        method = getattr(handler, delivery.method)
        if inspect.iscoroutinefunction(method):
            outcome = method(*delivery.args)
        else:
            context = contextvars.copy_context()
            outcome = await asyncio.get_running_loop().run_in_executor(None, context.run, method, *delivery.args)
        if inspect.isawaitable(outcome):
            await outcome
        return None
    except Exception as e:  # noqa: BLE001 - any failure of the application's code is an answer
        return describe_failure(delivery, e)
    finally:
        reset_delivery(token)


async def _newest(client: AsyncClient, job_id: Optional[str]) -> int:
    """Where a follow "from now" starts, so a reconnect can resume from it."""
    cursor = 0
    step: Optional[int] = 0
    while step is not None:
        cursor = step
        step = _calls.after_page(await client.events_read(after=cursor, job_id=job_id, limit=_calls.EVENTS_PAGE), cursor)
    return cursor


async def _follow(
    client: AsyncClient, after: Optional[int], job_id: Optional[str], reconnect_timeout: float
) -> AsyncGenerator[t.Event, None]:
    start = after if after is not None else await _newest(client, job_id)
    resume = _calls.Resume(client.socket_path, start, reconnect_timeout)
    while True:
        try:
            conn = await AsyncClient.connect(client.socket_path)
        except SocketNotFound:
            await asyncio.sleep(resume.gone())
            continue
        try:
            await conn.call("events.follow", resume.follow_params(job_id))
            resume.connected()
            assert conn._events is not None
            while True:
                event = await conn._events.get()
                if event is None:
                    break
                if resume.fresh(event):
                    yield event
        except Disconnected:
            pass
        finally:
            await conn.close()
        await asyncio.sleep(resume.gone())


async def serve_handler(handler: Handler, *, idle: float = 5.0) -> None:
    """:func:`ferry_client.serve_handler` on asyncio."""
    activation = Activation.from_env()
    async with AsyncClient(activation.socket) as client:
        await client.handler_attach(activation.name, activation.token, handler=handler)
        await client.wait_idle(idle)
