"""What the Python client sends for a set of representative calls equals what the Rust client
sends: both are compared with ``clients/snapshots/*.json`` (written and checked by the Rust test
``crates/ferry-client/tests/client/snapshots.rs``), so the two clients cannot drift apart."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from ferry_client import Client, Handler
from ferry_client.types import FileSpec

from conftest import REPO

SNAPSHOTS = REPO / "clients" / "snapshots"
JOB = "0b9f2a36-3c1e-4c57-9b7e-2f1d5f0e8a41"


def _job() -> Dict[str, Any]:
    return {"job_id": JOB, "display_name": "d", "description": "", "type": "download", "state": "suspended"}


ANSWERS: Dict[str, Any] = {
    "ferry.hello": {"protocol": 1, "server": "fake", "uid": 1000, "mode": "user"},
    "job.create": {"job_id": JOB},
    "job.add_files": {"first_index": 2, "count": 1},
    "job.get": _job(),
    "job.set": _job(),
    "job.take_ownership": _job(),
    "job.files": {"files": []},
    "job.get_error": None,
    "job.list": {"jobs": [], "next": None},
    "job.resume": {"state": "queued"},
    "job.suspend": {"state": "suspended"},
    "job.cancel": {"state": "cancelled"},
    "job.complete": {"state": "acknowledged", "partial": False},
    "file.set_validation_state": {"file_index": 3},
    "file.set_remote_url": {"file_index": 3},
    "handler.list": {"handlers": []},
    "handler.attach": {"jobs": [JOB]},
    "events.read": {"events": [], "next": 5},
}


class FakeDaemon:
    """Listens on a Unix socket, records every request (without its id) and answers it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.requests: List[Dict[str, Any]] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                request = json.loads(line)
                call_id = request.pop("id")
                self.requests.append(request)
                reply = {"jsonrpc": "2.0", "id": call_id, "result": ANSWERS.get(request["method"], {})}
                out = [reply]
                if request["method"] == "events.follow":
                    event = {"seq": 8, "time": "2026-01-01T00:00:00Z", "job_id": JOB, "kind": "created"}
                    out.append({"jsonrpc": "2.0", "method": "events.event", "params": {"event": event}})
                try:
                    conn.sendall(b"".join(json.dumps(m).encode() + b"\n" for m in out))
                except OSError:
                    return


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDaemon]:
    f = FakeDaemon(tmp_path / "fake.sock")
    try:
        yield f
    finally:
        f.listener.close()


def _specs() -> List[FileSpec]:
    return [
        {"remote_url": "https://example.org/a", "local_path": "/srv/ferry/a", "sha256": "ab" * 32},
        {
            "remote_url": "http://127.0.0.1:8080/b",
            "local_path": "/srv/ferry/b",
            "ranges": [{"offset": 0, "length": 100}, {"offset": 500, "length": None}],
        },
    ]


def _follow(c: Client) -> None:
    stream = c.events_follow(after=7)
    assert next(iter(stream))["seq"] == 8
    stream.close()


CASES: Dict[str, Callable[[Client], Any]] = {
    "ferry_hello": lambda c: c.ferry_hello(client="ferry-client"),
    "job_create": lambda c: c.job_create("nightly", priority="high", description="the nightly build", files=_specs()),
    "job_add_files": lambda c: c.job_add_files(JOB, _specs()[:1]),
    "job_get": lambda c: c.job_get(JOB),
    "job_files": lambda c: c.job_files(JOB, from_=0, limit=2000),
    "job_get_error": lambda c: c.job_get_error(JOB),
    "job_list": lambda c: c.job_list(states=["queued", "transient_error"], include_final=True, limit=50),
    "job_resume": lambda c: c.job_resume(JOB),
    "job_suspend": lambda c: c.job_suspend(JOB),
    "job_cancel": lambda c: c.job_cancel(JOB),
    "job_complete": lambda c: c.job_complete(JOB),
    "job_set": lambda c: c.job_set(
        JOB,
        priority="foreground",
        notify_flags=19,
        notify_handler="my-app",
        notify_cmdline=None,
        custom_headers=["X-Token: abc"],
        bandwidth_limit_bps=65536,
        proxy=None,
        peer_caching=False,
    ),
    "job_set_notify_interface": lambda c: c.set_notify_interface(JOB, Handler()),
    "job_clear_notify_interface": lambda c: c.clear_notify_interface(JOB),
    "job_take_ownership": lambda c: c.job_take_ownership(JOB),
    "file_set_validation_state": lambda c: c.file_set_validation_state(JOB, 3, False),
    "file_set_remote_url": lambda c: c.file_set_remote_url(JOB, 3, "https://example.org/a?sig=new"),
    "handler_register": lambda c: c.handler_register("my-app", ["/usr/local/bin/my-app", "--from-ferry"], 30),
    "handler_unregister": lambda c: c.handler_unregister("my-app"),
    "handler_list": lambda c: c.handler_list(),
    "handler_attach": lambda c: c.handler_attach("my-app", "token-1"),
    "events_read": lambda c: c.events_read(after=5, job_id=JOB, limit=100),
    "events_follow": _follow,
}


def test_every_snapshot_has_a_python_case() -> None:
    committed = sorted(p.stem for p in SNAPSHOTS.glob("*.json"))
    assert committed, f"no snapshots in {SNAPSHOTS}"
    assert committed == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_python_requests_equal_the_rust_clients(name: str, fake: FakeDaemon) -> None:
    with Client(fake.path, timeout=10) as client:
        CASES[name](client)
    expected = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    assert fake.requests == expected
