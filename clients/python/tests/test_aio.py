"""``ferry_client.aio.AsyncClient`` against a real ``ferryd``: coroutine callbacks, a callback
that never answers, and ``async for`` over ``events_follow`` across a daemon restart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import ferry_client
from ferry_client import Handler
from ferry_client.aio import AsyncClient
from ferry_client.types import Event, File, Job

from conftest import REPO, WAIT, Daemon, Origin, Stuck


class Completer(Handler):
    """Coroutine callbacks that validate each file and complete the job on the same connection."""

    def __init__(self) -> None:
        self.validated: List[int] = []
        self.done: Optional[asyncio.Event] = None
        self.delivery: Optional[str] = None

    async def file_transferred(self, job: Job, file: File) -> None:
        await self.aclient.file_set_validation_state(job["job_id"], file["file_index"], True)
        self.validated.append(file["file_index"])

    async def job_transferred(self, job: Job) -> None:
        self.delivery = ferry_client.current_delivery_id()
        await self.aclient.job_complete(job["job_id"])
        assert self.done is not None
        self.done.set()


def test_async_client_coroutine_callbacks_validate_and_complete(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    async def run() -> None:
        async with AsyncClient(timeout=WAIT) as client:
            files = [{"remote_url": origin.add(f"a{i}", bytes([i]) * 4096), "local_path": str(tmp_path / f"a{i}")} for i in range(5)]
            job_id = await client.job_create("py: async", files=files)  # type: ignore[arg-type]
            flags = ferry_client.NOTIFY_JOB_TRANSFERRED | ferry_client.NOTIFY_JOB_ERROR | ferry_client.NOTIFY_FILE_TRANSFERRED
            await client.job_set(job_id, notify_flags=flags)
            handler = Completer()
            handler.done = asyncio.Event()
            await client.set_notify_interface(job_id, handler)
            await client.job_resume(job_id)
            await asyncio.wait_for(handler.done.wait(), 60)
            assert handler.validated == [0, 1, 2, 3, 4]
            assert handler.delivery
            assert (await client.job_get(job_id))["state"] == "acknowledged"
            try:
                await client.job_get("00000000-0000-4000-8000-000000000000")
            except ferry_client.NotFound as e:
                assert e.kind == "not_found"
            else:
                raise AssertionError("job_get of a missing job did not raise NotFound")

    asyncio.run(run())
    for i in range(5):
        assert (tmp_path / f"a{i}").read_bytes() == bytes([i]) * 4096


def test_issue_16_async_callback_that_never_answers_does_not_stop_the_callers_calls(
    daemon: Daemon, origin: Origin, tmp_path: Path
) -> None:
    url = origin.add("one", b"y" * 4096)
    stuck = Stuck()

    async def run() -> None:
        async with AsyncClient() as client:
            job_id = await client.job_create("py: async stuck", files=[{"remote_url": url, "local_path": str(tmp_path / "one")}])
            await client.set_notify_interface(job_id, stuck)
            await client.job_resume(job_id)
            loop = asyncio.get_running_loop()
            assert await asyncio.wait_for(loop.run_in_executor(None, stuck.entered.wait, 60), 65)
            try:
                job = await asyncio.wait_for(client.job_get(job_id), 5)
                assert job["state"] == "transferred"
                assert (await asyncio.wait_for(client.job_complete(job_id), 5))["state"] == "acknowledged"
            finally:
                # Before the loop ends: asyncio.run waits for the executor's threads.
                stuck.release.set()

    asyncio.run(run())


def test_issue_16_async_events_follow_survives_a_daemon_restart_without_gap_or_duplicate(daemon: Daemon) -> None:
    async def run() -> List[Event]:
        seen: List[Event] = []
        async with AsyncClient(timeout=WAIT) as client:
            first = await client.job_create("py: async before")
            head = (await client.events_read(after=0))["next"]
            stream = client.events_follow(after=head)
            it = stream.__aiter__()
            await client.job_set(first, description="before the restart")
            while True:
                event = await asyncio.wait_for(it.__anext__(), WAIT)
                seen.append(event)
                if event["kind"] == "modified":
                    break
            # The daemon restarts while the follower is between events.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, daemon.restart)
            async with AsyncClient(timeout=WAIT) as after:
                second = await after.job_create("py: async after")
                await after.job_cancel(second)
                while True:
                    event = await asyncio.wait_for(it.__anext__(), WAIT)
                    seen.append(event)
                    if event["job_id"] == second and event["kind"] == "state":
                        break
                logged = (await after.events_read(after=head, limit=1000))["events"]
            await stream.aclose()
        expected = [e["seq"] for e in logged if e["seq"] <= seen[-1]["seq"]]
        assert [e["seq"] for e in seen] == expected
        return seen

    seen = asyncio.run(run())
    assert len({e["seq"] for e in seen}) == len(seen)


def test_the_watcher_example_completes_and_reports_the_job(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    url = origin.add("w", b"w" * 4096)
    with ferry_client.Client(timeout=WAIT) as client:
        job_id = client.job_create("py: watched", files=[{"remote_url": url, "local_path": str(tmp_path / "w")}])
    watcher = subprocess.Popen(
        [sys.executable, str(REPO / "clients" / "python" / "examples" / "watcher.py"), job_id],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, FERRY_SOCKET=daemon.socket, PYTHONUNBUFFERED="1"),
    )
    try:
        assert watcher.stdout is not None
        # The watcher is the live callback once its first line (the replayed `created`) is out.
        assert "created" in watcher.stdout.readline()
        with ferry_client.Client(timeout=WAIT) as client:
            client.job_resume(job_id)
        out, _ = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, out
    assert f"job {job_id} transferred; completing it" in out and "acknowledged" in out
    assert (tmp_path / "w").read_bytes() == b"w" * 4096


def test_a_connection_the_daemon_refuses_reports_why_on_asyncio_too(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d", ["--max-connections-per-user", "1"])

    async def run() -> None:
        async with AsyncClient(d.socket, timeout=WAIT) as first:
            await first.ferry_hello()
            async with AsyncClient(d.socket, timeout=WAIT) as second:
                for _ in range(2):
                    try:
                        await second.job_list()
                    except ferry_client.LimitExceeded as e:
                        assert e.data.get("limit") == "connections_per_user"
                    else:
                        raise AssertionError("a refused connection's call did not raise LimitExceeded")

    try:
        asyncio.run(run())
    finally:
        d.stop()
