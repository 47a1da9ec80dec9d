"""Starting a per-user ``ferryd`` in the background when none answers, as the ``ferry`` CLI
and the Rust client do (opt-in: ``Client(autostart=True)``).

The daemon is started as ``ferryd --socket SOCKET --log-to-state-dir [daemon_args...]`` in a
session of its own, outlives the application, and logs to ``ferryd.log`` in its state
directory; a daemon that exits before it listens is reported with the last lines it wrote to
stderr (the real cause, e.g. an unusable state directory)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import time
from typing import Optional, Sequence, Tuple, Union

from .errors import AutostartFailed, SocketNotFound
from .transport import connect_unix, find_socket, prepare_fallback_dir

__all__ = ["daemon_binary", "connect_or_start"]

_PathLike = Union[str, "os.PathLike[str]"]

#: How long a started daemon may take to listen.
START_TIMEOUT = 10.0

# The daemons started here: kept so that the Popen objects are not collected (and warned
# about) while the daemon runs on, which it does on purpose.
_started: "list[subprocess.Popen[bytes]]" = []


def daemon_binary() -> str:
    """The ``ferryd`` to start: ``FERRY_DAEMON``, else ``ferryd`` on ``PATH``."""
    explicit = os.environ.get("FERRY_DAEMON", "")
    if explicit:
        return explicit
    return shutil.which("ferryd") or "ferryd"


def _nobody_listens(e: SocketNotFound) -> bool:
    """Whether a failed connect means no daemon (no socket file, or a stale one)."""
    cause = e.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOENT, errno.ECONNREFUSED)


def summarize_stderr(text: str) -> Optional[str]:
    """The last non-empty lines of a daemon's stderr (at most 3, without ``ferryd: ``), joined
    with ``; ``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line[len("ferryd: "):] if line.startswith("ferryd: ") else line for line in lines]
    return "; ".join(lines[-3:]) or None


def connect_or_start(
    path: Optional[_PathLike] = None,
    *,
    daemon: Optional[_PathLike] = None,
    daemon_args: Sequence[str] = (),
) -> Tuple[socket.socket, str]:
    """Connects to ``path`` (default: :func:`ferry_client.transport.find_socket`), starting a
    daemon there first when nothing answers; returns the vetted socket and its path. Raises
    :class:`~ferry_client.AutostartFailed` when the daemon cannot be started or does not
    listen within 10 s."""
    where = os.fspath(path) if path is not None else find_socket()
    try:
        return connect_unix(where)
    except SocketNotFound as e:
        if not _nobody_listens(e):
            raise
    prepare_fallback_dir(where)
    binary = os.fspath(daemon) if daemon is not None else daemon_binary()
    try:
        child = subprocess.Popen(
            [binary, "--socket", where, "--log-to-state-dir", *daemon_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        raise AutostartFailed(f"cannot start {binary}: {e.strerror or e}; install ferryd or set FERRY_DAEMON") from e
    _started.append(child)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return connect_unix(where)
        except SocketNotFound as e:
            last = e
        status = child.poll()
        if status is not None:
            # Lost a race with another client's autostart: its daemon may be up now.
            try:
                return connect_unix(where)
            except SocketNotFound:
                pass
            said = summarize_stderr(child.stderr.read().decode(errors="replace") if child.stderr else "")
            if said:
                raise AutostartFailed(
                    f"ferryd exited with status {status} before listening on {where}: {said} (fix that, or set "
                    "FERRY_STATE_DIR to a writable directory if the state directory is the problem; "
                    "`ferry daemon` runs it in the foreground)"
                )
            raise AutostartFailed(
                f"ferryd exited with status {status} before listening on {where}; run `ferry daemon` to see why"
            )
        if time.monotonic() >= deadline:
            raise AutostartFailed(f"ferryd did not start listening on {where} within {START_TIMEOUT:.0f} s: {last}")
        # No event says "listening" to a process that is not the daemon's parent in spirit:
        # bounded polling, as the Rust client does.
        time.sleep(0.02)
