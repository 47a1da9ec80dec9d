"""The client against a real ``ferryd`` and a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Type

import pytest

import ferry_client
from ferry_client import Client, Handler, errors
from ferry_client.types import ErrorInfo, Event, FileRange, FileSpec, Job

from conftest import REPO, WAIT, Daemon, Origin, Stuck

EXAMPLES = REPO / "clients" / "python" / "examples"


def wait_until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Polls ``check`` (where there is no event to wait on) until it holds or the deadline."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


class Recorder(Handler):
    """Records ``job_transferred`` and signals it."""

    def __init__(self) -> None:
        self.transferred: List[Job] = []
        self.delivery_ids: List[Optional[str]] = []
        self.arrived = threading.Event()

    def job_transferred(self, job: Job) -> None:
        self.transferred.append(job)
        self.delivery_ids.append(ferry_client.current_delivery_id())
        self.arrived.set()


def test_a_hundred_files_resumed_transferred_by_a_handler_and_completed(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    files: List[FileSpec] = []
    contents: Dict[str, bytes] = {}
    for i in range(100):
        data = bytes([i]) * 4096
        local = str(dest / f"f{i:03}")
        contents[local] = data
        files.append({"remote_url": origin.add(f"f{i:03}", data), "local_path": local})
    with Client(timeout=WAIT) as client:
        job_id = client.job_create("py: 100 files", files=files)
        recorder = Recorder()
        client.set_notify_interface(job_id, recorder)
        assert client.job_get(job_id)["notify_interface"] is True
        assert client.job_resume(job_id)["state"] in ("queued", "connecting", "transferring", "transferred")
        assert recorder.arrived.wait(60), "job_transferred was not received within 60 s"
        assert recorder.transferred[0]["job_id"] == job_id
        assert recorder.transferred[0]["progress"]["files_transferred"] == 100
        assert recorder.delivery_ids[0]
        done = client.job_complete(job_id)
        assert done == {"state": "acknowledged", "partial": False}
        page = client.job_files(job_id, from_=0, limit=60)
        assert len(page["files"]) == 60 and page.get("next") == 60
    for local, data in contents.items():
        assert Path(local).read_bytes() == data, local


def test_a_handler_program_activated_by_the_daemon_validates_and_completes(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    url = origin.add("update.bin", b"new version\n" * 1000)
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "updater.py"), url, str(dest)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=dict(os.environ, FERRY_SOCKET=daemon.socket),
    )
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    with Client(timeout=WAIT) as client:
        assert client.job_get(job_id)["notify_handler"] == "ferry-example-updater-py"
        wait_until("the handler completes the job", lambda: client.job_get(job_id)["state"] == "acknowledged", 60)
        file = client.job_files(job_id)["files"][0]
        assert file["validation"] == "valid" and file["completed"] is True

        def answered_by_the_handler() -> Set[Any]:
            events = client.events_read(after=0, job_id=job_id)["events"]
            ok = [e for e in events if e["kind"] == "notification" and e.get("target") == "handler" and e.get("outcome") == "ok"]
            return {e.get("callback") for e in ok}

        # The job_transferred answer is logged once the callback returns, which may be after
        # the job_complete it made.
        wait_until("the handler's answers are logged", lambda: answered_by_the_handler() >= {"file_transferred", "job_transferred"})
    assert (dest / "update.bin").read_bytes() == b"new version\n" * 1000
    log = (dest / "ferry-example-updater-py.log").read_text()
    assert "valid: True" in log and "delivered" in log


def test_issue_16_events_follow_survives_a_daemon_restart_without_gap_or_duplicate(daemon: Daemon) -> None:
    seen: List[Event] = []
    failure: List[BaseException] = []
    marker: Dict[str, str] = {}
    got_marker = threading.Event()
    before_restart = threading.Event()

    with Client(timeout=WAIT) as client:
        first = client.job_create("py: before the restart")
        head = client.events_read(after=0)["next"]
        stream = client.events_follow()

        def follow() -> None:
            try:
                for event in stream:
                    seen.append(event)
                    if event["job_id"] == first and event["kind"] == "modified":
                        before_restart.set()
                    if event["job_id"] == marker.get("job") and event["kind"] == "state":
                        got_marker.set()
                        return
            except BaseException as e:  # noqa: BLE001 - reported by the test thread
                failure.append(e)
                got_marker.set()
                before_restart.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        # The follower is attached once it sees an event made after it started.
        wait_until("the follower attaches", lambda: bool(client.call("job.set", {"job_id": first, "description": "x"})) and before_restart.wait(0.5))
    daemon.restart()
    with Client(timeout=WAIT) as client:
        second = client.job_create("py: after the restart")
        client.job_set(second, description="changed after the restart")
        marker["job"] = second
        client.job_cancel(second)
        assert got_marker.wait(WAIT), "the follower did not see the events after the restart"
        assert not failure, failure
        logged = []
        cursor = head
        while True:
            page = client.events_read(after=cursor, limit=1000)
            if not page["events"]:
                break
            logged += page["events"]
            cursor = page["next"]
    seqs = [e["seq"] for e in seen]
    assert len(seqs) == len(set(seqs)), f"duplicates: {seqs}"
    assert seqs == sorted(seqs)
    # Everything the log holds after the follower started, up to the marker, was yielded once.
    expected = [e["seq"] for e in logged if e["seq"] <= seqs[-1]]
    assert seqs == expected, f"followed {seqs}, logged {expected}"
    assert any(e["job_id"] == second and e["kind"] == "created" for e in seen)


def test_issue_16_a_callback_that_never_answers_does_not_stop_the_callers_calls(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    url = origin.add("one", b"x" * 4096)
    # Every call is bounded: a client that served callbacks on its reader would time out here.
    with Client(timeout=5) as client:
        job_id = client.job_create("py: stuck callback", files=[{"remote_url": url, "local_path": str(tmp_path / "one")}])
        stuck = Stuck()
        client.set_notify_interface(job_id, stuck)
        client.job_resume(job_id)
        assert stuck.entered.wait(60), "job_transferred was not delivered within 60 s"
        try:
            # Each must be answered while the callback still holds the daemon's request.
            for _ in range(3):
                assert client.job_get(job_id)["state"] == "transferred"
            assert client.job_complete(job_id)["state"] == "acknowledged"
        finally:
            stuck.release.set()
    assert (tmp_path / "one").read_bytes() == b"x" * 4096


def _raises(cls: Type[ferry_client.FerryError], call: Callable[[], Any]) -> ferry_client.FerryError:
    with pytest.raises(ferry_client.FerryError) as info:
        call()
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    assert info.value.code == cls.CODE
    return info.value


def test_every_error_kind_the_daemon_answers_maps_to_its_class(daemon: Daemon, tmp_path: Path) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    with Client(timeout=WAIT) as client:
        e = _raises(ferry_client.NotFound, lambda: client.job_get(missing))
        assert e.kind == "not_found" and isinstance(e, ferry_client.NotFound)
        job_id = client.job_create("py: errors")
        e = _raises(ferry_client.InvalidState, lambda: client.job_resume(job_id))
        assert e.data.get("reason") == "empty"
        _raises(ferry_client.AccessDenied, lambda: client.handler_attach("py-h", token="not-a-token"))
        many: List[FileRange] = [{"offset": i * 10, "length": 1} for i in range(501)]
        e = _raises(
            ferry_client.LimitExceeded,
            lambda: client.job_add_files(job_id, [{"remote_url": "http://127.0.0.1:9/x", "local_path": str(tmp_path / "x"), "ranges": many}]),
        )
        assert e.data.get("limit") == "ranges_per_file"
        _raises(ferry_client.Unsupported, lambda: client.job_add_files(job_id, [{"remote_url": "ftp://127.0.0.1/x", "local_path": str(tmp_path / "x")}]))
        _raises(ferry_client.LocalIO, lambda: client.job_add_files(job_id, [{"remote_url": "http://127.0.0.1:9/x", "local_path": str(tmp_path / "no" / "x")}]))
        e = _raises(ferry_client.InvalidParams, lambda: client.job_add_files(job_id, [{"remote_url": "http://127.0.0.1:9/x", "local_path": "relative"}]))
        assert "local_path" in str(e.data.get("field"))
        client.job_add_files(job_id, [{"remote_url": "http://127.0.0.1:9/x", "local_path": str(tmp_path / "x")}])
        _raises(ferry_client.Pending, lambda: client.file_set_validation_state(job_id, 0, True))
        _raises(ferry_client.MethodNotFound, lambda: client.call("job.no_such_method", {}))
        assert client.job_cancel(job_id)["state"] == "cancelled"
    # What the client itself never sends, answered by the real daemon on a raw connection.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(WAIT)
        raw.connect(daemon.socket)
        answers = raw.makefile("rb")
        for line, cls in [(b"not json\n", ferry_client.ParseError), (b'{"jsonrpc":"2.0","id":1}\n', ferry_client.InvalidRequest)]:
            raw.sendall(line)
            error = json.loads(answers.readline())["error"]
            assert type(errors.error_from_wire(error)) is cls, error


class FailsOnce(Handler):
    """Raises on the first ``job_error``, then acknowledges the retry."""

    def __init__(self) -> None:
        self.calls: List[Any] = []
        self.done = threading.Event()

    def job_error(self, job: Job, error: ErrorInfo) -> None:
        self.calls.append((ferry_client.current_delivery_id(), error["code"], job["state"]))
        if len(self.calls) == 1:
            raise RuntimeError("the disk is not ready")
        self.done.set()


def test_a_callback_that_raises_is_answered_with_an_error_and_retried(daemon: Daemon, origin: Origin, tmp_path: Path) -> None:
    with Client(timeout=WAIT) as client:
        job_id = client.job_create("py: 404", files=[{"remote_url": origin.url("missing"), "local_path": str(tmp_path / "m")}])
        client.job_set(job_id, minimum_retry_delay_s=1)
        handler = FailsOnce()
        client.set_notify_interface(job_id, handler)
        client.job_resume(job_id)
        assert handler.done.wait(WAIT), f"job_error was not retried: {handler.calls}"
        first, second = handler.calls
        assert first == second and first[0] and first[1:] == ("HTTP_404", "error"), handler.calls
        events = client.events_read(after=0, job_id=job_id)["events"]
        outcomes = [(e.get("outcome"), e.get("detail", "")) for e in events if e.get("callback") == "job_error"]
        assert outcomes[0][0] == "failed" and "the disk is not ready" in outcomes[0][1], outcomes
        assert outcomes[-1][0] == "ok", outcomes
        client.job_cancel(job_id)


def test_set_clears_nullable_properties_with_none(daemon: Daemon) -> None:
    with Client(timeout=WAIT) as client:
        job_id = client.job_create("py: set")
        job = client.job_set(job_id, notify_cmdline=["/bin/true"], bandwidth_limit_bps=1000, priority="high")
        assert job["notify_cmdline"] == ["/bin/true"] and job["bandwidth_limit_bps"] == 1000
        job = client.job_set(job_id, notify_cmdline=None, bandwidth_limit_bps=None)
        assert job["notify_cmdline"] is None and job["bandwidth_limit_bps"] is None
        assert job["priority"] == "high"
        hello = client.ferry_hello(client="pytest")
        assert hello["protocol"] == 1 and hello["uid"] == os.geteuid()
        listed = client.job_list(states=["suspended"])
        assert job_id in [j["job_id"] for j in listed["jobs"]]
        client.job_cancel(job_id)


def test_daemon_conditions_answer_with_the_network_and_power_state(daemon: Daemon) -> None:
    with Client(timeout=WAIT) as client:
        conditions = client.daemon_conditions()
        assert isinstance(conditions, dict) and conditions, conditions


def test_a_connection_the_daemon_refuses_reports_why_on_every_call(tmp_path: Path) -> None:
    d = Daemon(tmp_path / "d", ["--max-connections-per-user", "1"])
    try:
        with Client(d.socket, timeout=WAIT) as first:
            assert first.ferry_hello()["protocol"] == 1
            with Client(d.socket, timeout=WAIT) as second:
                for _ in range(2):
                    with pytest.raises(ferry_client.LimitExceeded) as info:
                        second.job_list()
                    assert info.value.data.get("limit") == "connections_per_user", info.value.data
                    assert "--max-connections-per-user" in info.value.message
    finally:
        d.stop()
