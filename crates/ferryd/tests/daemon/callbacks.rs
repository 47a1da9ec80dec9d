//! Test-side callback clients: a live callback connection built directly on `ferry-rpc` (so
//! these tests pin the wire contract, not the client library), and real handler and command-line
//! programs (python3 and /bin/sh) that ferryd starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::ProtoError;
use ferry_rpc::{Handled, Peer, Service};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// What the fake application answers to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `{}`.
    Ok,
    /// A JSON-RPC error.
    Fail,
    /// Calls `job.complete` on the same connection, then answers `{}`.
    CompleteThenOk,
    /// Waits for a permit of the app's `hold` semaphore, then answers `{}`.
    Hold,
}

/// One callback as the application received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub params: Value,
}

impl Received {
    pub fn delivery_id(&self) -> &str {
        self.params["delivery_id"].as_str().unwrap_or("")
    }
    pub fn file_index(&self) -> Option<u64> {
        self.params["file"]["file_index"].as_u64()
    }
    pub fn state(&self) -> &str {
        self.params["job"]["state"].as_str().unwrap_or("")
    }
}

struct App {
    answer: Arc<Mutex<Answer>>,
    hold: Arc<tokio::sync::Semaphore>,
    tx: mpsc::UnboundedSender<Received>,
}

impl Service for App {
    fn request(
        &self,
        peer: Arc<Peer>,
        method: String,
        params: Option<Value>,
    ) -> BoxFuture<'static, Handled> {
        let answer = *self.answer.lock().unwrap();
        let tx = self.tx.clone();
        let hold = self.hold.clone();
        Box::pin(async move {
            let params = params.unwrap_or(Value::Null);
            let job_id = params["job"]["job_id"].clone();
            let _ = tx.send(Received {
                method: method.clone(),
                params,
            });
            match answer {
                Answer::Ok => Handled::Reply(Ok(json!({}))),
                // Deferred, so the connection keeps serving other callbacks meanwhile.
                Answer::Hold => Handled::Deferred(Box::pin(async move {
                    let _ = hold.acquire().await.map(|p| p.forget());
                    Ok(json!({}))
                })),
                Answer::Fail => Handled::Reply(Err(ProtoError::new(
                    ferry_proto::ErrorCode(-32000),
                    "the application is not ready",
                ))),
                Answer::CompleteThenOk => {
                    if method == "callback.job_transferred" {
                        let r = peer.call("job.complete", json!({"job_id": job_id})).await;
                        assert!(r.is_ok(), "job.complete inside the callback: {r:?}");
                    }
                    Handled::Reply(Ok(json!({})))
                }
            }
        })
    }
}

/// A live callback connection.
pub struct LiveApp {
    pub peer: Arc<Peer>,
    pub answer: Arc<Mutex<Answer>>,
    /// Permits release held callbacks (`Answer::Hold`), one each.
    pub hold: Arc<tokio::sync::Semaphore>,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl LiveApp {
    pub async fn connect(socket: &Path) -> LiveApp {
        let s = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (r, w) = s.into_split();
        let answer = Arc::new(Mutex::new(Answer::Ok));
        let hold = Arc::new(tokio::sync::Semaphore::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let app = App {
            answer: answer.clone(),
            hold: hold.clone(),
            tx,
        };
        let (peer, _) = ferry_rpc::serve(r, w, Arc::new(app));
        LiveApp {
            peer,
            answer,
            hold,
            rx,
        }
    }

    pub fn answer(&self, a: Answer) {
        *self.answer.lock().unwrap() = a;
    }

    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.peer
            .call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    pub async fn register(&self, job_id: &str) {
        self.call("job.set_notify_interface", json!({"job_id": job_id}))
            .await;
    }

    /// The next callback, failing the test after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Received {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .expect("a callback arrived in time")
            .expect("connection open")
    }

    /// Whether a callback arrives within `within` (for "nothing is delivered" checks).
    pub async fn quiet_for(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.rx.recv()).await.is_err()
    }
}

/// A handler program (python3) that ferryd starts: it attaches with its activation token,
/// logs every callback as a JSON line (with its uid) to `log`, calls `job.complete` inside
/// `job_transferred` when `complete` is set, and exits after 10 s without messages.
pub fn handler_script(dir: &Path, log: &Path, complete: bool) -> Vec<String> {
    let script = dir.join("handler.py");
    std::fs::write(
        &script,
        r#"
import json, os, socket, sys
log, complete = sys.argv[1], sys.argv[2] == "1"
def note(**kw):
    kw["uid"] = os.getuid()
    with open(log, "a") as f:
        f.write(json.dumps(kw) + "\n")
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["FERRY_SOCKET"])
s.settimeout(10)
f = s.makefile("rwb", buffering=0)
def send(o):
    f.write(json.dumps(o).encode() + b"\n")
# Callbacks that arrive while a job.complete is answered wait here: up to 4 may be in flight.
pending = []
def receive():
    try:
        line = f.readline()
    except OSError:
        return None
    return json.loads(line) if line else None
def read():
    return pending.pop(0) if pending else receive()
note(event="started", handler=os.environ.get("FERRY_HANDLER"))
send({"jsonrpc": "2.0", "id": "attach", "method": "handler.attach",
      "params": {"name": os.environ["FERRY_HANDLER"], "token": os.environ["FERRY_ACTIVATION"]}})
while True:
    msg = read()
    if msg is None:
        break
    if msg.get("id") == "attach":
        note(event="attached", result=msg.get("result"), error=msg.get("error"))
        continue
    if "method" not in msg:
        continue
    p = msg.get("params", {})
    note(event=msg["method"], delivery_id=p.get("delivery_id"), job_id=p["job"]["job_id"],
         file_index=(p.get("file") or {}).get("file_index"))
    if complete and msg["method"] == "callback.job_transferred":
        send({"jsonrpc": "2.0", "id": "complete", "method": "job.complete", "params": {"job_id": p["job"]["job_id"]}})
        while True:
            r = receive()
            if r is None or r.get("id") == "complete":
                note(event="completed", result=(r or {}).get("result"))
                break
            pending.append(r)
    send({"jsonrpc": "2.0", "id": msg["id"], "result": {}})
"#,
    )
    .unwrap();
    make_readable(&script);
    vec![
        "/usr/bin/env".into(),
        "python3".into(),
        script.to_string_lossy().into_owned(),
        log.to_string_lossy().into_owned(),
        if complete { "1" } else { "0" }.into(),
    ]
}

/// A command line that appends `event job uid` to `log` and exits with `code`.
pub fn cmdline(log: &Path, code: i32) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "echo \"$FERRY_EVENT $FERRY_JOB_ID $(id -u)\" >> '{}'; exit {code}",
            log.display()
        ),
    ]
}

/// The JSON lines a handler wrote.
pub fn log_lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A log file anyone may append to (handlers may run as another uid).
pub fn shared_log(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, b"").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    p
}

fn make_readable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
}
