//! systemd integration: a socket-activated ferryd serves the listener it was given and tells the
//! service manager it is ready. A small python3 stand-in plays systemd (binds the socket, passes
//! it as fd 3 with `LISTEN_FDS`/`LISTEN_PID`, listens on `NOTIFY_SOCKET`).

use serde_json::Value;

/// The stand-in; an optional fifth argument sets the socket's mode first (e.g. `0o666`).
pub const FAKE_SYSTEMD: &str = r#"
import json, os, signal, socket, sys
ferryd, sock_path, notify_path, state = sys.argv[1:5]
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); lsock.bind(sock_path); lsock.listen(16)
if len(sys.argv) > 5:
    os.chmod(sock_path, int(sys.argv[5], 0))
mode_before = os.stat(sock_path).st_mode & 0o777
nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); nsock.bind(notify_path); nsock.settimeout(20)
pid = os.fork()
if pid == 0:
    if lsock.fileno() != 3:
        os.dup2(lsock.fileno(), 3)
    os.set_inheritable(3, True)
    env = dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), NOTIFY_SOCKET=notify_path)
    os.execve(ferryd, [ferryd, "--socket", sock_path, "--state-dir", state], env)
out = {"notify": nsock.recv(4096).decode().strip()}
out["mode_before"] = mode_before
out["mode_when_ready"] = os.stat(sock_path).st_mode & 0o777
c = socket.socket(socket.AF_UNIX); c.connect(sock_path); f = c.makefile("rwb", buffering=0)
f.write(b'{"jsonrpc":"2.0","id":1,"method":"ferry.hello","params":{}}\n')
out["hello"] = json.loads(f.readline())
os.kill(pid, signal.SIGTERM)
out["stopping"] = nsock.recv(4096).decode().strip()
_, status = os.waitpid(pid, 0)
out["exit"] = os.waitstatus_to_exitcode(status)
out["socket_kept"] = os.path.exists(sock_path)
print(json.dumps(out))
"#;

/// Runs ferryd under the stand-in (with `extra` arguments for it) and returns its report.
pub fn run_fake_systemd(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(FAKE_SYSTEMD)
        .arg(env!("CARGO_BIN_EXE_ferryd"))
        .arg(dir.path().join("activated.sock"))
        .arg(dir.path().join("notify.sock"))
        .arg(dir.path().join("state"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn socket_activated_daemon_serves_and_notifies_readiness() {
    let v = run_fake_systemd(&[]);
    assert_eq!(v["notify"], "READY=1");
    assert_eq!(v["hello"]["result"]["protocol"], 1);
    assert_eq!(v["stopping"], "STOPPING=1");
    assert_eq!(v["exit"], 0);
    assert_eq!(
        v["socket_kept"], true,
        "an activated socket belongs to systemd"
    );
}
