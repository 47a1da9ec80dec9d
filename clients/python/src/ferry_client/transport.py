"""Finding the daemon's socket and deciding whether it is safe to talk to, and the newline
framing of protocol 1.

The rules are the Rust client's: ``FERRY_SOCKET``, else the per-user socket if it exists, else
the system socket if it exists, else the per-user path. Another user must not be able to stand
in for the daemon and read what the caller sends (tokens in custom headers, credentials), so
before a byte is sent the per-user socket's directory must be the caller's with mode 0700, the
system socket's directory root's and writable only by root, and the process listening on any
socket (``SO_PEERCRED``) must run as the caller or as root.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import socket
import stat
import struct
from typing import Any, Dict, Mapping, Optional, Union

from .errors import ProtocolError, SocketNotFound, UnsafeSocket

__all__ = [
    "SYSTEM_SOCKET",
    "MAX_LINE_BYTES",
    "MAX_ANSWER_LINE",
    "SocketKind",
    "user_socket",
    "find_socket",
    "check_socket_dir",
    "check_listener",
    "vet_socket_dir",
    "prepare_fallback_dir",
    "vet_listener",
    "connect_unix",
    "encode_message",
    "decode_line",
    "decode_message",
]

#: The system daemon's socket.
SYSTEM_SOCKET = "/run/ferry/ferryd.sock"
#: The longest request line the daemon reads (it refuses longer ones and closes).
MAX_LINE_BYTES = 1024 * 1024
#: The longest answer line this client reads: as the Rust client, far above what a paged call
#: returns, so an unpaged ``job.files`` of a large job still arrives.
MAX_ANSWER_LINE = 256 * 1024 * 1024

_PathLike = Union[str, "os.PathLike[str]"]

log = logging.getLogger("ferry_client")


class SocketKind(enum.Enum):
    """Which directory rule a socket path falls under."""

    #: The discovered per-user socket: its directory must be the caller's, mode 0700.
    USER = "user"
    #: The system socket: its directory must be root's and writable only by root.
    SYSTEM = "system"
    #: A path the caller named (``FERRY_SOCKET``, an argument): only the listener is checked.
    EXPLICIT = "explicit"

    @staticmethod
    def of(path: str, env: Optional[Mapping[str, str]] = None) -> "SocketKind":
        """The rule for ``path`` in this environment."""
        if path == SYSTEM_SOCKET:
            return SocketKind.SYSTEM
        if path == user_socket(env):
            return SocketKind.USER
        return SocketKind.EXPLICIT


def user_socket(env: Optional[Mapping[str, str]] = None) -> str:
    """The per-user socket path: ``$XDG_RUNTIME_DIR/ferry/ferryd.sock``, or, where no login
    session set ``XDG_RUNTIME_DIR`` (containers, CI, ``su``), ``/tmp/ferry-<uid>/ferryd.sock``."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime:
        return os.path.join(runtime, "ferry", "ferryd.sock")
    return os.path.join(env.get("TMPDIR", "/tmp"), f"ferry-{os.geteuid()}", "ferryd.sock")


def find_socket(env: Optional[Mapping[str, str]] = None) -> str:
    """Where to connect: ``FERRY_SOCKET``, else the per-user socket if it exists, else the
    system socket if it exists, else the per-user path."""
    env = os.environ if env is None else env
    explicit = env.get("FERRY_SOCKET", "")
    if explicit:
        return explicit
    user = user_socket(env)
    if os.path.exists(user):
        return user
    if os.path.exists(SYSTEM_SOCKET):
        return SYSTEM_SOCKET
    return user


def check_socket_dir(kind: SocketKind, is_dir: bool, uid: int, mode: int, caller: int) -> Optional[str]:
    """Why a socket's directory may not be trusted, or ``None`` when it may: the per-user
    socket's directory must be a real directory owned by the caller with mode 0700, the system
    socket's owned by root and writable by root only; an explicit path is the caller's choice."""
    if kind is SocketKind.EXPLICIT:
        return None
    if kind is SocketKind.USER:
        owner, bad_bits, rule = caller, 0o077, "owned by you with mode 0700"
    else:
        owner, bad_bits, rule = 0, 0o022, "owned by root and writable only by root"
    if is_dir and uid == owner and mode & bad_bits == 0:
        return None
    what = "" if is_dir else "not a directory, "
    return (
        f"is not {rule} (it is {what}owned by uid {uid} with mode {stat.S_IMODE(mode):04o}), "
        "so another user may have put the socket there"
    )


def check_listener(listener_uid: int, caller: int) -> Optional[str]:
    """Why the process listening on a socket may not be trusted, or ``None`` when it may: it
    must run as the caller or as root (the system daemon)."""
    if listener_uid in (caller, 0):
        return None
    return f"the process listening on it runs as uid {listener_uid}, neither you (uid {caller}) nor root"


def _unsafe(path: str, why: str) -> UnsafeSocket:
    return UnsafeSocket(
        f"refusing to talk to {path}: {why}; check who created it, or set FERRY_SOCKET to the socket of a daemon you trust"
    )


def prepare_fallback_dir(path: str) -> None:
    """Before starting a daemon on the fallback per-user socket (``/tmp/ferry-<uid>/``, used
    when ``XDG_RUNTIME_DIR`` is unset), creates its directory with mode 0700 and vets it: in a
    shared ``/tmp`` another user could have made it first. Other locations are left alone."""
    if os.environ.get("XDG_RUNTIME_DIR", "") or path != user_socket():
        return
    directory = os.path.dirname(path)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise SocketNotFound(f"cannot create the socket directory {directory}: {e.strerror or e}") from e
    vet_socket_dir(path)


def vet_socket_dir(path: str) -> None:
    """Raises :class:`UnsafeSocket` when ``path``'s directory breaks :func:`check_socket_dir`."""
    kind = SocketKind.of(path)
    if kind is SocketKind.EXPLICIT:
        return
    directory = os.path.dirname(path) or "."
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        # Nothing there: the connect fails with "not found".
        return
    except OSError as e:
        raise _unsafe(path, f"its directory {directory} cannot be inspected: {e}") from e
    why = check_socket_dir(kind, stat.S_ISDIR(st.st_mode), st.st_uid, st.st_mode, os.geteuid())
    if why is not None:
        raise _unsafe(path, f"its directory {directory} {why}")


def listener_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a connected Unix socket (``SO_PEERCRED``)."""
    size = struct.calcsize("3i")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def vet_listener(path: str, sock: socket.socket) -> None:
    """Raises :class:`UnsafeSocket` when the listener breaks :func:`check_listener`; called
    before a byte is sent."""
    try:
        uid = listener_uid(sock)
    except OSError as e:
        raise _unsafe(path, f"the listener's identity (SO_PEERCRED) cannot be read: {e}") from e
    why = check_listener(uid, os.geteuid())
    if why is not None:
        raise _unsafe(path, why)


def connect_unix(path: Optional[_PathLike] = None, timeout: Optional[float] = 10.0) -> "tuple[socket.socket, str]":
    """Connects to ``path`` (default: :func:`find_socket`) after vetting its directory, and
    vets the listener before returning; returns the blocking socket and the path used."""
    where = os.fspath(path) if path is not None else find_socket()
    vet_socket_dir(where)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(where)
        sock.settimeout(None)
        vet_listener(where, sock)
    except UnsafeSocket:
        sock.close()
        raise
    except OSError as e:
        sock.close()
        raise SocketNotFound(
            f"cannot connect to ferryd at {where}: {e.strerror or e}; is ferryd running? "
            "(start it with `ferry daemon`, or set FERRY_SOCKET to its socket)"
        ) from e
    return sock, where


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One message as a line; raises :class:`ProtocolError` when it exceeds the daemon's
    1 MiB line limit (the daemon would refuse it and close the connection)."""
    line = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    if len(line) > MAX_LINE_BYTES:
        method = message.get("method", "an answer")
        raise ProtocolError(
            f"the request for {method} is {len(line)} bytes, over the protocol's limit of "
            f"{MAX_LINE_BYTES} bytes per line; send fewer items per call"
        )
    return line


def decode_line(line: bytes) -> Any:
    """One received line as JSON; raises :class:`ProtocolError` for anything else."""
    try:
        return json.loads(line)
    except ValueError as e:
        raise ProtocolError(f"ferryd sent a line that is not JSON: {e}") from e


def decode_message(line: bytes) -> Optional[Dict[str, Any]]:
    """One received line as a message object, or ``None`` (logged) for garbage, which the
    protocol says to skip without closing the connection."""
    try:
        message = decode_line(line)
    except ProtocolError as e:
        log.warning("%s", e)
        return None
    return message if isinstance(message, dict) else None


def overlong(limit: int) -> str:
    """Why a connection closed after an answer line over ``limit`` bytes."""
    return f"ferryd sent a line longer than {limit} bytes; the connection was closed"
