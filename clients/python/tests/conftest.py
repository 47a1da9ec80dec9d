"""Fixtures: a real ``ferryd`` per test (its own socket and state dir in a temp dir) and a real
HTTP server on 127.0.0.1 serving generated files."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

import ferry_client
from ferry_client.types import Job

REPO = Path(__file__).resolve().parents[3]
#: Bound for anything that should happen promptly; a hang fails instead of blocking.
WAIT = 30.0


def ferry_bin(name: str) -> Path:
    """A binary built by ``cargo build`` (``FERRY_BIN_DIR``, else the workspace's target dir)."""
    base = os.environ.get("FERRY_BIN_DIR") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target"), "debug"
    )
    path = Path(base) / name
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `cargo build --bin ferryd --bin ferry` first (or set FERRY_BIN_DIR)")
    return path


class Daemon:
    """A ``ferryd`` process; :meth:`restart` keeps its socket and state dir."""

    def __init__(self, root: Path, extra: Optional[List[str]] = None) -> None:
        self.root = root
        self.socket = str(root / "ferryd.sock")
        self.state_dir = str(root / "state")
        self.extra = extra or []
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> None:
        """Starts the daemon and waits until it says it is ready."""
        args = [str(ferry_bin("ferryd")), "--socket", self.socket, "--state-dir", self.state_dir]
        args += ["--retry-delay-floor", "1", "--resident-grace-ms", "10", *self.extra]
        env = dict(os.environ, FERRY_LOG="info", FERRY_CONFIG="/dev/null")
        self.proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ready = threading.Event()
        stderr = self.proc.stderr
        assert stderr is not None

        def pump() -> None:
            for raw in stderr:
                line = raw.decode(errors="replace").rstrip()
                sys.stderr.write(f"[ferryd] {line}\n")
                if "ferryd is ready" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        assert ready.wait(WAIT), "ferryd was not ready within 30 s"
        assert self.proc.poll() is None, f"ferryd exited with {self.proc.returncode} before it was ready"

    def stop(self) -> None:
        """Stops the daemon cleanly (SIGTERM) and waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stops and starts again on the same socket and state."""
        self.stop()
        self.start()


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A fresh daemon; ``FERRY_SOCKET`` points at it for the test."""
    d = Daemon(tmp_path / "d")
    monkeypatch.setenv("FERRY_SOCKET", d.socket)
    try:
        yield d
    finally:
        d.stop()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class Origin:
    """An HTTP server on 127.0.0.1 serving ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_Quiet, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        """The URL of ``root/name``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def add(self, name: str, data: bytes) -> str:
        """Serves ``data`` as ``name``; returns its URL."""
        (self.root / name).write_bytes(data)
        return self.url(name)


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[Origin]:
    """A real HTTP server on loopback."""
    root = tmp_path / "www"
    root.mkdir()
    o = Origin(root)
    try:
        yield o
    finally:
        o.server.shutdown()
        o.server.server_close()
        shutil.rmtree(root, ignore_errors=True)


class Stuck(ferry_client.Handler):
    """A plain callback that never answers ``job_transferred`` until the test releases it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def job_transferred(self, job: Job) -> None:
        self.entered.set()
        self.release.wait(WAIT * 4)
