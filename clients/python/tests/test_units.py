"""The pure rules: error mapping, callback decoding, params building, socket rules, limits."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path
from typing import Any, Dict, List, Type

import pytest

import ferry_client
from ferry_client import _calls, errors
from ferry_client.handler import Activation, decode_callback
from ferry_client.transport import (
    MAX_LINE_BYTES,
    SYSTEM_SOCKET,
    SocketKind,
    check_listener,
    check_socket_dir,
    encode_message,
    find_socket,
    user_socket,
)

KINDS: Dict[str, Type[errors.FerryError]] = {
    "not_found": ferry_client.NotFound,
    "invalid_state": ferry_client.InvalidState,
    "access_denied": ferry_client.AccessDenied,
    "limit_exceeded": ferry_client.LimitExceeded,
    "unsupported": ferry_client.Unsupported,
    "local_io": ferry_client.LocalIO,
    "pending": ferry_client.Pending,
    "internal": ferry_client.Internal,
}
CODES: Dict[int, Type[errors.FerryError]] = {
    -32700: ferry_client.ParseError,
    -32600: ferry_client.InvalidRequest,
    -32601: ferry_client.MethodNotFound,
    -32602: ferry_client.InvalidParams,
    -32000: ferry_client.NotFound,
    -32001: ferry_client.InvalidState,
    -32002: ferry_client.AccessDenied,
    -32003: ferry_client.LimitExceeded,
    -32004: ferry_client.Unsupported,
    -32005: ferry_client.LocalIO,
    -32006: ferry_client.Pending,
    -32010: ferry_client.CallbackFailed,
    -32099: ferry_client.Internal,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_error_kind_maps_to_its_class(kind: str) -> None:
    cls = KINDS[kind]
    wire = {"code": cls.CODE, "message": f"a {kind}", "data": {"kind": kind, "bits": "BG_E_X"}}
    e = errors.error_from_wire(wire)
    assert type(e) is cls and isinstance(e, ferry_client.FerryError)
    assert (e.code, e.message, e.kind, e.data) == (cls.CODE, f"a {kind}", kind, {"kind": kind, "bits": "BG_E_X"})
    assert e.to_wire() == wire


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_code_maps_to_its_class_without_data(code: int) -> None:
    e = errors.error_from_wire({"code": code, "message": "m"})
    assert type(e) is CODES[code] and e.kind == CODES[code].KIND and e.data == {}


def test_unknown_errors_are_the_base_class() -> None:
    e = errors.error_from_wire({"code": -31000, "message": "new", "data": {"kind": "from_the_future"}})
    assert type(e) is ferry_client.FerryError and e.kind == "from_the_future"
    e = errors.error_from_wire({"code": "x"})
    assert type(e) is ferry_client.FerryError and "without a message" in e.message


def test_callbacks_decode_and_ignore_unknown_fields() -> None:
    job = {"job_id": "j1", "error": {"code": "HTTP_404"}}
    d = decode_callback("callback.job_error", {"delivery_id": "d1", "job": job, "new_field": 1})
    assert (d.delivery_id, d.job_id, d.method) == ("d1", "j1", "job_error")
    assert d.args == (job, {"code": "HTTP_404"})
    d = decode_callback("callback.file_ranges_transferred", {"delivery_id": "d", "job": job, "file": {}, "ranges": None})
    assert d.args[2] == []
    with pytest.raises(ferry_client.InvalidParams) as info:
        decode_callback("callback.job_transferred", {"job": job})
    assert info.value.data["field"] == "delivery_id"
    with pytest.raises(ferry_client.InvalidParams):
        decode_callback("callback.file_transferred", {"delivery_id": "d", "job": job})
    with pytest.raises(ferry_client.MethodNotFound):
        decode_callback("callback.bogus", {})


def test_params_omit_none() -> None:
    assert _calls.present(a=1, b=None) == {"a": 1}


def test_a_follower_yields_each_seq_once_and_gives_up_after_its_deadline() -> None:
    resume = _calls.Resume("/s", 5, reconnect_timeout=0.0)
    event: Any = {"seq": 5}
    assert not resume.fresh(event)
    event = {"seq": 6}
    assert resume.fresh(event) and not resume.fresh(event)
    assert resume.follow_params(None) == {"after": 6}
    with pytest.raises(ferry_client.Disconnected, match="after seq 6"):
        resume.gone()
    resume = _calls.Resume("/s", 0, reconnect_timeout=60.0)
    assert resume.gone() > 0
    resume.connected()
    assert resume.deadline is None


def test_many_files_are_split_into_requests_under_the_line_limit() -> None:
    specs: List[Any] = [{"remote_url": f"https://example.org/{i:06}", "local_path": f"/srv/{i:06}"} for i in range(20000)]
    params, rest = _calls.create_plan("big", None, None, None, specs)
    batches = [params["files"], *rest]
    assert sum(len(b) for b in batches) == 20000 and len(batches) > 1
    for i, batch in enumerate(batches):
        encode_message(_calls.request(i, "job.add_files", {"job_id": "j", "files": batch}))
    params, rest = _calls.create_plan("none", None, None, None, None)
    assert "files" not in params and rest == []


def test_a_request_over_one_mib_is_refused_before_sending() -> None:
    with pytest.raises(ferry_client.ProtocolError) as info:
        encode_message(_calls.request(1, "job.set", {"description": "x" * MAX_LINE_BYTES}))
    assert "1048576" in str(info.value)


def test_socket_discovery_follows_the_rust_client(tmp_path: Path) -> None:
    assert find_socket({"FERRY_SOCKET": "/x/s.sock"}) == "/x/s.sock"
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    assert user_socket(env) == str(tmp_path / "ferry" / "ferryd.sock")
    assert user_socket({}) == f"/tmp/ferry-{os.geteuid()}/ferryd.sock"
    if not os.path.exists(SYSTEM_SOCKET):
        assert find_socket(env) == user_socket(env)
    (tmp_path / "ferry").mkdir()
    (tmp_path / "ferry" / "ferryd.sock").touch()
    assert find_socket(env) == user_socket(env)
    assert SocketKind.of(SYSTEM_SOCKET) is SocketKind.SYSTEM
    assert SocketKind.of(user_socket(env), env) is SocketKind.USER
    assert SocketKind.of("/elsewhere.sock", env) is SocketKind.EXPLICIT


ME = 1000
DIR = stat.S_IFDIR


def test_the_user_socket_directory_must_be_the_callers_and_private() -> None:
    assert check_socket_dir(SocketKind.USER, True, ME, DIR | 0o700, ME) is None
    for uid, mode in [(1001, 0o700), (0, 0o700), (ME, 0o755), (ME, 0o701)]:
        assert check_socket_dir(SocketKind.USER, True, uid, DIR | mode, ME) is not None, (uid, mode)
    why = check_socket_dir(SocketKind.USER, False, ME, 0o700, ME)
    assert why is not None and "not a directory" in why


def test_the_system_socket_directory_must_be_roots() -> None:
    assert check_socket_dir(SocketKind.SYSTEM, True, 0, DIR | 0o755, ME) is None
    for uid, mode in [(ME, 0o755), (0, 0o775), (0, 0o777)]:
        assert check_socket_dir(SocketKind.SYSTEM, True, uid, DIR | mode, ME) is not None


def test_an_explicit_socket_directory_is_the_callers_choice() -> None:
    assert check_socket_dir(SocketKind.EXPLICIT, True, 1001, DIR | 0o777, ME) is None


def test_only_the_caller_or_root_may_listen() -> None:
    assert check_listener(ME, ME) is None and check_listener(0, ME) is None
    why = check_listener(1001, ME)
    assert why is not None and "uid 1001" in why and "uid 1000" in why


def test_activation_reads_the_three_variables() -> None:
    a = Activation.from_env({"FERRY_SOCKET": "/s", "FERRY_HANDLER": "h", "FERRY_ACTIVATION": "t"})
    assert (a.socket, a.name, a.token) == ("/s", "h", "t")
    with pytest.raises(ferry_client.NotActivated) as info:
        Activation.from_env({})
    assert "FERRY_ACTIVATION" in str(info.value)
    with pytest.raises(ferry_client.NotActivated, match="FERRY_SOCKET"):
        Activation.from_env({"FERRY_HANDLER": "h", "FERRY_ACTIVATION": "t"})
    assert not ferry_client.activated({}) and ferry_client.activated({"FERRY_ACTIVATION": "t"})


def test_serve_handler_outside_an_activation_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FERRY_ACTIVATION", raising=False)
    with pytest.raises(ferry_client.NotActivated):
        ferry_client.serve_handler(ferry_client.Handler())


def test_the_package_logs_nowhere_by_default() -> None:
    import logging

    handlers = logging.getLogger("ferry_client").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_an_overlong_answer_line_closes_the_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A listener that answers with a line that never ends: the client gives up at its limit
    # (lowered here) instead of buffering without bound.
    import ferry_client.client as client_module

    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    monkeypatch.setattr(client_module, "MAX_ANSWER_LINE", 1024)
    try:
        c = ferry_client.Client(path, timeout=10)
        conn, _ = listener.accept()
        conn.sendall(b'{"jsonrpc":"2.0","id":1,"result":"' + b"x" * 4096)
        with pytest.raises(ferry_client.Disconnected, match="longer than 1024"):
            c.call("job.get", {"job_id": "x"})
        c.close()
        conn.close()
    finally:
        listener.close()


def test_every_protocol_method_has_a_method_on_both_clients() -> None:
    """The method names come from the Rust wire crate, so a method added there and not here fails."""
    from conftest import REPO
    from ferry_client.aio import AsyncClient

    source = (REPO / "crates" / "ferry-proto" / "src" / "method.rs").read_text()
    names = re.findall(r'pub const [A-Z_]+: &str = "([a-z]+\.[a-z_]+)";', source)
    wanted = [n for n in names if not n.startswith("callback.") and n != "events.event"]
    assert len(wanted) > 20, wanted
    missing = [
        (cls.__name__, n)
        for n in wanted
        for cls in (ferry_client.Client, AsyncClient)
        if not callable(getattr(cls, n.replace(".", "_"), None))
    ]
    assert missing == []
