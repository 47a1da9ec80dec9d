"""The client-side socket rules, attacked: another user's program posing as ferryd, and a
per-user socket directory another user controls. Either way nothing may be sent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

import ferry_client

NOBODY = 65534

# Listens as nobody, reports when it listens, then how many bytes its one client sent.
IMPOSTOR = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(1)
print("listening", flush=True)
conn, _ = s.accept(); conn.settimeout(5)
got = b""
try:
    while True:
        chunk = conn.recv(65536)
        if not chunk: break
        got += chunk
except OSError:
    pass
print(len(got), flush=True)
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may write to (so nobody can bind a socket in it)."""
    d = Path(tempfile.mkdtemp(prefix="ferry-py-", dir="/tmp"))
    os.chmod(d, 0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _python_for_nobody() -> str:
    """An interpreter another uid may run (the test's own may live under /root)."""
    for candidate in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
        try:
            probe = subprocess.run([candidate, "-c", "pass"], preexec_fn=_as_nobody, capture_output=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.fail("no Python interpreter that uid 65534 may run (install python3)")


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@contextlib.contextmanager
def impostor(path: str) -> Iterator["subprocess.Popen[str]"]:
    """Another uid's program listening on ``path``; its stdout then says how many bytes it got."""
    proc = subprocess.Popen(
        [_python_for_nobody(), "-c", IMPOSTOR, path], stdout=subprocess.PIPE, text=True, preexec_fn=_as_nobody
    )
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "listening"
        yield proc
        assert proc.stdout.readline().strip() == "0", "the client sent bytes to an impostor"
    finally:
        proc.kill()
        proc.wait(10)


def _connect_sync(path: str) -> None:
    ferry_client.Client(path)


def _connect_asyncio(path: str) -> None:
    from ferry_client.aio import AsyncClient

    asyncio.run(AsyncClient.connect(path))


@pytest.mark.parametrize("connect", [_connect_sync, _connect_asyncio], ids=["sync", "asyncio"])
def test_issue_16_impostor_listener_of_another_uid_gets_no_byte(shared_dir: Path, connect: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        print("SKIPPED: needs root to run a listener as another uid")
        return
    path = str(shared_dir / "ferryd.sock")
    with impostor(path):
        with pytest.raises(ferry_client.UnsafeSocket) as info:
            connect(path)
        text = str(info.value)
        assert f"uid {NOBODY}" in text and "neither you" in text, text


def test_issue_16_planted_user_socket_directory_is_refused_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-user socket's directory is world-writable: anyone may have put the socket there.
    runtime = tmp_path / "run"
    (runtime / "ferry").mkdir(parents=True)
    os.chmod(runtime / "ferry", 0o777)
    monkeypatch.delenv("FERRY_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    with pytest.raises(ferry_client.UnsafeSocket) as info:
        ferry_client.Client()
    assert "mode 0777" in str(info.value) and "owned by you with mode 0700" in str(info.value)
    if os.geteuid() == 0:
        # Owned by another user, even with mode 0700.
        os.chmod(runtime / "ferry", 0o700)
        os.chown(runtime / "ferry", NOBODY, NOBODY)
        with pytest.raises(ferry_client.UnsafeSocket, match=f"owned by uid {NOBODY}"):
            ferry_client.Client()
    else:
        print("SKIPPED (in part): needs root to hand the directory to another uid")
    # A symlink in place of the directory is refused as well.
    shutil.rmtree(runtime / "ferry")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", runtime / "ferry")
    with pytest.raises(ferry_client.UnsafeSocket, match="not a directory"):
        ferry_client.Client()


def test_a_private_user_socket_directory_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    (runtime / "ferry").mkdir(parents=True, mode=0o700)
    os.chmod(runtime / "ferry", 0o700)
    monkeypatch.delenv("FERRY_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # Nothing listens: the failure is "not found", not "unsafe".
    with pytest.raises(ferry_client.SocketNotFound, match="is ferryd running"):
        ferry_client.Client()
