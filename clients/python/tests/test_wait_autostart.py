"""``wait_for`` and the opt-in autostart, on both clients, against a real ``ferryd`` and a real
HTTP server on 127.0.0.1 (the Rust client's ``live`` tests, in Python)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import List

import pytest

import ferry_client
from ferry_client import Client, errors
from ferry_client.aio import AsyncClient
from ferry_client.types import Job

from conftest import WAIT, Daemon, Origin, ferry_bin


def _stop(pid: int) -> None:
    """Stops a daemon the client started (it outlives the client on purpose)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def test_issue_13_autostart_starts_a_daemon_only_when_asked(tmp_path: Path) -> None:
    sock = str(tmp_path / "ferryd.sock")
    state = tmp_path / "state"
    with pytest.raises(errors.SocketNotFound):
        Client(sock)
    assert not state.exists(), "nothing may have run without the opt-in"
    args = ["--state-dir", str(state), "--config", "/dev/null", "--system-bus", "none"]
    with Client(sock, autostart=True, daemon=ferry_bin("ferryd"), daemon_args=args, timeout=WAIT) as client:
        hello = client.ferry_hello()
        pid = hello.get("pid")
        assert isinstance(pid, int) and pid != os.getpid()
        try:
            assert hello.get("state_dir") == str(state)
            assert (state / "ferryd.log").is_file(), "it logs to its state dir, as the CLI's does"
            # A second client finds it instead of starting another.
            with Client(sock, autostart=True, daemon=ferry_bin("ferryd"), daemon_args=args) as again:
                assert again.ferry_hello().get("pid") == pid
            job_id = client.job_create("py autostart")
            assert client.wait_for(job_id, ["suspended"], timeout=WAIT)["state"] == "suspended"
        finally:
            _stop(pid)


def test_issue_13_autostart_failure_names_the_binary(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ferryd"
    with pytest.raises(errors.AutostartFailed) as caught:
        Client(str(tmp_path / "ferryd.sock"), autostart=True, daemon=missing)
    assert str(missing) in str(caught.value) and "FERRY_DAEMON" in str(caught.value)


def test_issue_13_async_autostart(tmp_path: Path) -> None:
    sock = str(tmp_path / "ferryd.sock")
    args = ["--state-dir", str(tmp_path / "state"), "--config", "/dev/null", "--system-bus", "none"]

    async def main() -> int:
        async with AsyncClient(sock, autostart=True, daemon=ferry_bin("ferryd"), daemon_args=args) as client:
            pid = (await client.ferry_hello()).get("pid")
            assert isinstance(pid, int)
            return pid

    _stop(asyncio.run(main()))


def test_issue_13_wait_for_settles_on_transferred_and_on_error(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    good = str(tmp_path / "good.bin")
    with Client(timeout=WAIT) as client:
        job_id = client.job_create("py wait", files=[{"remote_url": origin.add("good.bin", b"g" * 5000), "local_path": good}])
        # Already there: a new job is suspended.
        assert client.wait_for(job_id, ["suspended"], timeout=WAIT)["state"] == "suspended"
        client.job_resume(job_id)
        job = client.wait_for(job_id, timeout=WAIT)
        assert job["state"] == "transferred", job
        client.job_complete(job_id)
        assert Path(good).read_bytes() == b"g" * 5000

        bad = client.job_create("py wait 404", files=[{"remote_url": origin.url("missing"), "local_path": str(tmp_path / "m")}])
        client.job_resume(bad)
        job = client.wait_for(bad, ferry_client.SETTLED, timeout=WAIT)
        assert job["state"] == "error"
        error = job.get("error")
        assert error is not None and error["code"] == "HTTP_404", job


def test_issue_13_wait_for_sees_a_state_the_job_only_passes_through(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    # An auto_complete job is `transferred` only until the daemon completes it: a poll would most
    # likely miss it; the state event is not missed.
    with Client(timeout=WAIT) as client:
        job_id = client.job_create("py pass", files=[{"remote_url": origin.add("p.bin", b"p" * 4096), "local_path": str(tmp_path / "p.bin")}])
        client.call("job.set", {"job_id": job_id, "auto_complete": True})
        got: List[Job] = []
        waiter = threading.Thread(target=lambda: got.append(client.wait_for(job_id, ["transferred"], timeout=WAIT)))
        waiter.start()
        # The wait follows before it reads: resuming after it started is safe whenever it runs.
        client.job_resume(job_id)
        waiter.join(WAIT * 2)
        assert got and got[0]["state"] in ("transferred", "acknowledged"), got
        assert client.wait_for(job_id, ["acknowledged"], timeout=WAIT)["state"] == "acknowledged"


def test_issue_13_wait_for_times_out_as_call_timeout(daemon: Daemon) -> None:
    with Client(timeout=WAIT) as client:
        job_id = client.job_create("py never resumed")
        with pytest.raises(errors.CallTimeout) as caught:
            client.wait_for(job_id, timeout=0.3)
        assert "suspended" in str(caught.value) and job_id in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        with pytest.raises(errors.NotFound):
            client.wait_for("00000000-0000-4000-8000-000000000000", timeout=WAIT)


def test_issue_13_async_wait_for(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncClient(timeout=WAIT) as client:
            url = origin.add("a.bin", b"a" * 3000)
            job_id = await client.job_create("py async wait", files=[{"remote_url": url, "local_path": str(tmp_path / "a.bin")}])
            with pytest.raises(errors.CallTimeout):
                await client.wait_for(job_id, timeout=0.3)
            await client.job_resume(job_id)
            job = await client.wait_for(job_id, timeout=WAIT)
            assert job["state"] == "transferred"
            await client.job_cancel(job_id)
            assert (await client.wait_for(job_id, ["cancelled"], timeout=WAIT))["state"] == "cancelled"

    asyncio.run(main())
