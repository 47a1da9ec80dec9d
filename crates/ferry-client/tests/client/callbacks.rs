//! The callback plumbing of `ferry-client` against a fake daemon: the daemon side is a plain
//! `ferry_rpc` peer on the other end of a `UnixStream::pair`, which sends `callback.*` requests
//! and answers the few client calls the callbacks make.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_client::handler::{self, ServeOptions};
use ferry_client::proto::{ErrorCode, ErrorInfo, File, FileRange, Job, ProtoError};
use ferry_client::{Callback, CallbackContext, CallbackError, CallbackFuture, Client};
use ferry_rpc::{CallError, Handled, Peer, Service};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tokio::sync::Notify;
use tokio::time::timeout;

/// Bound for anything that should happen promptly; a hang fails instead of blocking.
const WAIT: Duration = Duration::from_secs(10);

fn job_json(id: &str) -> Value {
    json!({"job_id": id, "display_name": "d", "description": "", "type": "download",
        "owner_uid": 1000, "priority": "normal", "state": "transferred",
        "progress": {"bytes_total": 10, "bytes_transferred": 10, "files_total": 1,
            "files_transferred": 1},
        "times": {"created": "2026-01-01T00:00:00Z", "modified": "2026-01-01T00:00:00Z",
            "transfer_completed": null},
        "error": null, "error_count": 0, "waiting": null, "notify_flags": 3,
        "notify_interface": true, "notify_handler": null, "notify_cmdline": null,
        "minimum_retry_delay_s": 600, "no_progress_timeout_s": 1209600,
        "max_download_time_s": 7776000, "minimum_notification_interval_ms": 500,
        "custom_headers": [], "bandwidth_limit_bps": null, "max_parallel_files": 8,
        "credentials_set": false, "proxy": null, "allow_https_to_http": false,
        "peer_caching": true})
}

fn file_json() -> Value {
    json!({"file_index": 0, "remote_url": "https://h/a", "local_path": "/tmp/a",
        "bytes_total": 10, "bytes_transferred": 10, "transferred": true, "completed": false,
        "ranges": null, "sha256": null, "validation": "unset", "from_peer": false,
        "bytes_from_peers": 0, "temporary_path": "/tmp/.ferry-a.part"})
}

/// The daemon side: records every call it gets and answers the ones callbacks make.
#[derive(Default)]
struct FakeDaemon {
    calls: Mutex<Vec<(String, Value)>>,
}

impl FakeDaemon {
    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }

    fn methods(&self) -> Vec<String> {
        self.calls().into_iter().map(|(m, _)| m).collect()
    }
}

impl Service for FakeDaemon {
    fn request(
        &self,
        _: Arc<Peer>,
        method: String,
        params: Option<Value>,
    ) -> BoxFuture<'static, Handled> {
        let params = params.unwrap_or(Value::Null);
        self.calls
            .lock()
            .unwrap()
            .push((method.clone(), params.clone()));
        let id = params["job_id"].as_str().unwrap_or("").to_owned();
        let r = match method.as_str() {
            "job.get" => Ok(job_json(&id)),
            "job.complete" => Ok(json!({"state": "acknowledged", "partial": false})),
            "job.set_notify_interface" | "job.clear_notify_interface" => Ok(json!({})),
            "handler.attach" if params["name"] == "refused" => Err(ProtoError::new(
                ErrorCode::ACCESS_DENIED,
                "wrong or used activation token",
            )),
            "handler.attach" => Ok(json!({"jobs": ["j1"]})),
            _ => Err(ProtoError::new(ErrorCode::METHOD_NOT_FOUND, "unknown")),
        };
        Box::pin(async move { Handled::Reply(r) })
    }
}

/// A client and the fake daemon's peer on the two ends of one connection.
fn connect() -> (Client, Arc<Peer>, Arc<FakeDaemon>) {
    let (a, b) = UnixStream::pair().unwrap();
    let client = Client::from_stream(a);
    let fake = Arc::new(FakeDaemon::default());
    let (r, w) = b.into_split();
    let (daemon, _task) = ferry_rpc::serve(r, w, fake.clone());
    (client, daemon, fake)
}

/// The daemon calls back and returns the client's answer.
async fn deliver(daemon: &Peer, method: &str, params: Value) -> Result<Value, CallError> {
    timeout(WAIT, daemon.call(method, params))
        .await
        .expect("the client answers the callback")
}

fn transferred(job_id: &str, delivery_id: &str) -> Value {
    json!({"delivery_id": delivery_id, "job": job_json(job_id)})
}

/// The canonical BITS callback: reads the job and completes it, on the same connection.
#[derive(Default)]
struct Completer {
    seen: Mutex<Vec<String>>,
}

impl Callback for Completer {
    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        self.seen.lock().unwrap().push(ctx.delivery_id.clone());
        Box::pin(async move {
            let fresh = ctx.client.get(&job.job_id).await?;
            ctx.client.complete(&fresh.job_id).await?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_live_callback_calls_the_daemon_on_the_same_connection() {
    let (client, daemon, fake) = connect();
    let cb = Arc::new(Completer::default());
    client.set_notify_interface("j1", cb.clone()).await.unwrap();
    let answer = deliver(&daemon, "callback.job_transferred", transferred("j1", "d1"))
        .await
        .unwrap();
    assert_eq!(answer, json!({}));
    assert_eq!(*cb.seen.lock().unwrap(), ["d1"]);
    assert_eq!(
        fake.methods(),
        ["job.set_notify_interface", "job.get", "job.complete"]
    );
    assert_eq!(fake.calls()[2].1, json!({"job_id": "j1"}));
}

/// Records the kind and typed params of every callback.
#[derive(Default)]
struct Recorder {
    got: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn push(&self, s: String) -> CallbackFuture {
        self.got.lock().unwrap().push(s);
        ferry_client::callback::acknowledge()
    }
}

impl Callback for Recorder {
    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        self.push(format!("transferred {} {}", job.job_id, ctx.delivery_id))
    }
    fn job_error(&self, _: CallbackContext, job: Job, error: ErrorInfo) -> CallbackFuture {
        self.push(format!("error {} {}", job.job_id, error.code))
    }
    fn job_modification(&self, _: CallbackContext, job: Job) -> CallbackFuture {
        self.push(format!("modification {}", job.job_id))
    }
    fn file_transferred(&self, _: CallbackContext, job: Job, file: File) -> CallbackFuture {
        self.push(format!("file {} {}", job.job_id, file.file_index))
    }
    fn file_ranges_transferred(
        &self,
        _: CallbackContext,
        job: Job,
        _: File,
        ranges: Vec<FileRange>,
    ) -> CallbackFuture {
        self.push(format!("ranges {} {}", job.job_id, ranges.len()))
    }
}

#[tokio::test]
async fn each_callback_reaches_its_method_with_typed_params() {
    let (client, daemon, _fake) = connect();
    let rec = Arc::new(Recorder::default());
    client
        .set_notify_interface("j1", rec.clone())
        .await
        .unwrap();
    let job = job_json("j1");
    let error = json!({"context": "remote_file", "code": "HTTP_404", "http_status": 404,
        "transient": false, "description": "gone", "file_index": 0, "protocol": "https"});
    for (method, params) in [
        (
            "callback.file_transferred",
            json!({"delivery_id": "a", "job": job, "file": file_json()}),
        ),
        (
            "callback.file_ranges_transferred",
            json!({"delivery_id": "b", "job": job, "file": file_json(),
                "ranges": [{"offset": 0, "length": 4}, {"offset": 8, "length": null}]}),
        ),
        (
            "callback.job_modification",
            json!({"delivery_id": "c", "job": job}),
        ),
        (
            "callback.job_error",
            json!({"delivery_id": "d", "job": job, "error": error}),
        ),
        ("callback.job_transferred", transferred("j1", "e")),
    ] {
        assert_eq!(deliver(&daemon, method, params).await.unwrap(), json!({}));
    }
    assert_eq!(
        *rec.got.lock().unwrap(),
        [
            "file j1 0",
            "ranges j1 2",
            "modification j1",
            "error j1 HTTP_404",
            "transferred j1 e"
        ]
    );
}

fn remote(r: Result<Value, CallError>) -> ProtoError {
    match r {
        Err(CallError::Remote(e)) => e,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

struct Failing;

impl Callback for Failing {
    fn job_transferred(&self, _: CallbackContext, _: Job) -> CallbackFuture {
        Box::pin(async { Err(CallbackError::new("not ready yet")) })
    }
    fn job_error(&self, _: CallbackContext, _: Job, _: ErrorInfo) -> CallbackFuture {
        panic!("a bug in the application")
    }
    fn job_modification(&self, _: CallbackContext, _: Job) -> CallbackFuture {
        Box::pin(async { panic!("a bug in the future") })
    }
}

#[tokio::test]
async fn failures_are_answered_as_errors_and_the_connection_keeps_serving() {
    let (client, daemon, _fake) = connect();
    client
        .set_notify_interface("j1", Arc::new(Failing))
        .await
        .unwrap();
    let e = remote(deliver(&daemon, "callback.job_transferred", transferred("j1", "d")).await);
    assert_eq!(e.code, CallbackError::CODE);
    assert_eq!(e.message, "not ready yet");
    assert_eq!(e.data_kind(), Some("callback_failed"));

    let job = job_json("j1");
    let mut with_error = job.clone();
    with_error["error"] = json!({"context": "remote_file", "code": "X", "transient": false,
        "description": "x"});
    let e = remote(
        deliver(
            &daemon,
            "callback.job_error",
            json!({"delivery_id": "d", "job": with_error}),
        )
        .await,
    );
    assert_eq!(e.code, CallbackError::CODE);
    assert!(e.message.contains("panicked"), "{e:?}");
    let e = remote(
        deliver(
            &daemon,
            "callback.job_modification",
            json!({"delivery_id": "d", "job": job}),
        )
        .await,
    );
    assert!(e.message.contains("panicked"), "{e:?}");
    // Still serving, and still able to call the daemon.
    let e = remote(deliver(&daemon, "callback.job_transferred", transferred("j1", "d")).await);
    assert_eq!(e.code, CallbackError::CODE);
    client.get("j1").await.unwrap();
}

#[tokio::test]
async fn malformed_unknown_and_unrouted_callbacks_get_errors() {
    let (client, daemon, _fake) = connect();
    let e = remote(
        deliver(
            &daemon,
            "callback.job_transferred",
            json!({"delivery_id": "d"}),
        )
        .await,
    );
    assert_eq!(e.code, -32602);
    assert_eq!(e.data.unwrap()["field"], "job");
    let e = remote(deliver(&daemon, "callback.job_transferred", json!([1, 2])).await);
    assert_eq!(e.code, -32602);
    let e = remote(deliver(&daemon, "callback.what", json!({})).await);
    assert_eq!(e.code, -32601);
    let e = remote(deliver(&daemon, "job.get", json!({"job_id": "j1"})).await);
    assert_eq!(e.code, -32601);
    // Well-formed, but nothing serves the job on this connection.
    let e = remote(deliver(&daemon, "callback.job_transferred", transferred("j9", "d")).await);
    assert_eq!(e.code, CallbackError::CODE);
    assert!(e.message.contains("j9"), "{e:?}");
    drop(client);
}

#[tokio::test]
async fn per_job_callbacks_win_over_the_default_and_clearing_stops_delivery() {
    let (client, daemon, fake) = connect();
    let for_j1 = Arc::new(Recorder::default());
    let default = Arc::new(Recorder::default());
    client
        .set_notify_interface("j1", for_j1.clone())
        .await
        .unwrap();
    client.set_default_callback(Some(default.clone()));
    deliver(&daemon, "callback.job_transferred", transferred("j1", "a"))
        .await
        .unwrap();
    deliver(&daemon, "callback.job_transferred", transferred("j2", "b"))
        .await
        .unwrap();
    assert_eq!(*for_j1.got.lock().unwrap(), ["transferred j1 a"]);
    assert_eq!(*default.got.lock().unwrap(), ["transferred j2 b"]);

    client.clear_notify_interface("j1").await.unwrap();
    client.set_default_callback(None);
    let e = remote(deliver(&daemon, "callback.job_transferred", transferred("j1", "c")).await);
    assert_eq!(e.code, CallbackError::CODE);
    assert_eq!(
        fake.methods(),
        ["job.set_notify_interface", "job.clear_notify_interface"]
    );
}

/// Blocks `job_transferred` until released; completes other jobs' callbacks at once.
struct Gate {
    release: Arc<Notify>,
}

impl Callback for Gate {
    fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
        let release = self.release.clone();
        Box::pin(async move {
            if job.job_id == "slow" {
                release.notified().await;
            }
            ctx.client.complete(&job.job_id).await?;
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_slow_callback_blocks_neither_other_callbacks_nor_the_clients_calls() {
    let (client, daemon, fake) = connect();
    let release = Arc::new(Notify::new());
    client.set_default_callback(Some(Arc::new(Gate {
        release: release.clone(),
    })));
    let slow = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            deliver(
                &daemon,
                "callback.job_transferred",
                transferred("slow", "s"),
            )
            .await
        }
    });
    // While the slow one waits: another callback is served, and the client's own calls work.
    deliver(
        &daemon,
        "callback.job_transferred",
        transferred("fast", "f"),
    )
    .await
    .unwrap();
    timeout(WAIT, client.get("fast")).await.unwrap().unwrap();
    assert!(!slow.is_finished());
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap(), json!({}));
    let completed: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|(m, _)| m == "job.complete")
        .map(|(_, p)| p["job_id"].clone())
        .collect();
    assert_eq!(completed, [json!("fast"), json!("slow")]);
}

#[tokio::test]
async fn dropping_the_last_clone_closes_the_connection() {
    let (client, daemon, _fake) = connect();
    let clone = client.clone();
    drop(client);
    // A clone keeps it open.
    clone.get("j1").await.unwrap();
    assert!(!daemon.is_closed());
    drop(clone);
    timeout(WAIT, daemon.closed()).await.unwrap();
}

#[tokio::test]
async fn a_handler_attaches_serves_and_returns_when_idle() {
    let (client, daemon, fake) = connect();
    let release = Arc::new(Notify::new());
    let idle = Duration::from_millis(300);
    let serving = tokio::spawn(handler::serve_on(
        client,
        "h",
        Some("tok"),
        Arc::new(Gate {
            release: release.clone(),
        }),
        ServeOptions::idle(idle),
    ));
    // The attach call comes first; then callbacks for any job are served.
    while fake.methods().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.calls()[0],
        (
            "handler.attach".to_owned(),
            json!({"name": "h", "token": "tok"})
        )
    );
    deliver(&daemon, "callback.job_transferred", transferred("j1", "a"))
        .await
        .unwrap();
    // A callback in flight longer than the idle period keeps the handler serving.
    let slow = tokio::spawn({
        let daemon = daemon.clone();
        async move {
            deliver(
                &daemon,
                "callback.job_transferred",
                transferred("slow", "s"),
            )
            .await
        }
    });
    tokio::time::sleep(idle * 3).await;
    assert!(!serving.is_finished());
    release.notify_one();
    assert_eq!(slow.await.unwrap().unwrap(), json!({}));
    timeout(WAIT, serving).await.unwrap().unwrap().unwrap();
    // Returning closed the connection, so the daemon no longer counts it as the handler.
    timeout(WAIT, daemon.closed()).await.unwrap();
}

#[tokio::test]
async fn a_handler_returns_when_the_daemon_closes_the_connection() {
    let (client, daemon, _fake) = connect();
    let serving = tokio::spawn(handler::serve_on(
        client,
        "h",
        None,
        Arc::new(Recorder::default()),
        ServeOptions::idle(Duration::from_secs(3600)),
    ));
    deliver(&daemon, "callback.job_transferred", transferred("j1", "a"))
        .await
        .unwrap();
    daemon.close();
    timeout(WAIT, serving).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_refused_attach_is_an_error() {
    let (client, daemon, _fake) = connect();
    let e = handler::serve_on(
        client,
        "refused",
        Some("used"),
        Arc::new(Recorder::default()),
        ServeOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.daemon_error().map(|e| e.code), Some(-32002));
    timeout(WAIT, daemon.closed()).await.unwrap();
}
