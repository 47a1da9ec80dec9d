//! The JSON the Rust client sends for a set of representative calls, captured from a fake
//! socket and compared with the committed snapshots in `clients/snapshots/`. The Python client's
//! tests compare what it sends with the same files, so the two clients cannot drift apart.
//! `FERRY_UPDATE_SNAPSHOTS=1` rewrites the files after an intended change of the wire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_client::proto::params::{
    CreateParams, EventsFollowParams, EventsReadParams, ListParams, SetParams,
};
use ferry_client::proto::{FileRange, FileSpec, JobState, Priority};
use ferry_client::{Callback, Client};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::time::timeout;

const JOB: &str = "0b9f2a36-3c1e-4c57-9b7e-2f1d5f0e8a41";
const WAIT: Duration = Duration::from_secs(10);

/// What the fake daemon answers to each method: a result the client decodes, or, for methods
/// whose result is a whole job or file, an error (only the request matters here).
fn answer(method: &str) -> Result<Value, Value> {
    Ok(match method {
        "ferry.hello" => json!({"protocol": 1, "server": "fake", "uid": 1000, "mode": "user"}),
        "job.create" => json!({"job_id": JOB}),
        "job.add_files" => json!({"first_index": 2, "count": 1}),
        "job.get"
        | "job.set"
        | "job.take_ownership"
        | "file.set_validation_state"
        | "file.set_remote_url" => {
            return Err(json!({"code": -32000, "message": "no such job"}));
        }
        "job.files" => json!({"files": []}),
        "job.get_error" => Value::Null,
        "job.list" => json!({"jobs": [], "next": null}),
        "job.resume" => json!({"state": "queued"}),
        "job.suspend" => json!({"state": "suspended"}),
        "job.cancel" => json!({"state": "cancelled"}),
        "job.complete" => json!({"state": "acknowledged", "partial": false}),
        "handler.list" => json!({"handlers": []}),
        "handler.attach" => json!({"jobs": [JOB]}),
        "events.read" => json!({"events": [], "next": 5}),
        _ => json!({}),
    })
}

/// Serves one client connection: records every request line (without its id, which depends
/// on the order of calls) and answers it.
async fn fake_daemon(stream: UnixStream, seen: Arc<Mutex<Vec<Value>>>) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut request: Value = serde_json::from_str(&line).unwrap();
        let id = request.as_object_mut().unwrap().remove("id").unwrap();
        let method = request["method"].as_str().unwrap().to_owned();
        seen.lock().unwrap().push(request);
        let reply = match answer(&method) {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
        };
        let mut out = serde_json::to_vec(&reply).unwrap();
        out.push(b'\n');
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

struct Silent;
impl Callback for Silent {}

fn specs() -> Vec<FileSpec> {
    vec![
        FileSpec {
            remote_url: "https://example.org/a".into(),
            local_path: "/srv/ferry/a".into(),
            sha256: Some("ab".repeat(32)),
            ranges: None,
        },
        FileSpec {
            remote_url: "http://127.0.0.1:8080/b".into(),
            local_path: "/srv/ferry/b".into(),
            sha256: None,
            ranges: Some(vec![
                FileRange {
                    offset: 0,
                    length: Some(100),
                },
                FileRange {
                    offset: 500,
                    length: None,
                },
            ]),
        },
    ]
}

/// Runs every representative call on its own connection; returns (name, requests sent).
async fn capture() -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    macro_rules! case {
        ($name:literal, |$c:ident| $body:expr) => {{
            let (a, b) = UnixStream::pair().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let server = tokio::spawn(fake_daemon(b, seen.clone()));
            let $c = Client::from_stream(a);
            // Only the requests matter: some answers are errors on purpose.
            let _ = timeout(WAIT, async { $body })
                .await
                .expect("the call is answered");
            $c.close();
            let _ = timeout(WAIT, server).await;
            out.push(($name, seen.lock().unwrap().clone()));
        }};
    }
    case!("ferry_hello", |c| c.hello().await.map(drop));
    case!("job_create", |c| c
        .create(CreateParams {
            display_name: "nightly".into(),
            priority: Some(Priority::High),
            description: Some("the nightly build".into()),
            files: Some(specs()),
            ..CreateParams::default()
        })
        .await
        .map(drop));
    case!("job_add_files", |c| c
        .add_files(JOB, specs()[..1].to_vec())
        .await
        .map(drop));
    case!("job_get", |c| c.get(JOB).await.map(drop));
    case!("job_files", |c| c.files(JOB).await.map(drop));
    case!("job_get_error", |c| c.get_error(JOB).await.map(drop));
    case!("job_list", |c| c
        .list(ListParams {
            states: Some(vec![JobState::Queued, JobState::TransientError]),
            include_final: Some(true),
            limit: Some(50),
            ..ListParams::default()
        })
        .await
        .map(drop));
    case!("job_resume", |c| c.resume(JOB).await.map(drop));
    case!("job_suspend", |c| c.suspend(JOB).await.map(drop));
    case!("job_cancel", |c| c.cancel(JOB).await.map(drop));
    case!("job_complete", |c| c.complete(JOB).await.map(drop));
    case!("job_set", |c| c
        .set(SetParams {
            job_id: JOB.into(),
            priority: Some(Priority::Foreground),
            notify_flags: Some(19),
            notify_handler: Some(Some("my-app".into())),
            notify_cmdline: Some(None),
            custom_headers: Some(vec!["X-Token: abc".into()]),
            bandwidth_limit_bps: Some(Some(65536)),
            proxy: Some(None),
            peer_caching: Some(false),
            ..SetParams::default()
        })
        .await
        .map(drop));
    case!("job_set_notify_interface", |c| c
        .set_notify_interface(JOB, Arc::new(Silent))
        .await);
    case!("job_clear_notify_interface", |c| c
        .clear_notify_interface(JOB)
        .await);
    case!("job_take_ownership", |c| c
        .take_ownership(JOB)
        .await
        .map(drop));
    case!("file_set_validation_state", |c| c
        .set_validation(JOB, 3, false)
        .await
        .map(drop));
    case!("file_set_remote_url", |c| c
        .set_remote_url(JOB, 3, "https://example.org/a?sig=new")
        .await
        .map(drop));
    case!("handler_register", |c| c
        .register_handler(
            "my-app",
            vec!["/usr/local/bin/my-app".into(), "--from-ferry".into()],
            Some(30)
        )
        .await);
    case!("handler_unregister", |c| c
        .unregister_handler("my-app")
        .await);
    case!("handler_list", |c| c.list_handlers().await.map(drop));
    case!("handler_attach", |c| c
        .attach_handler("my-app", Some("token-1"))
        .await
        .map(drop));
    case!("events_read", |c| c
        .read_events(EventsReadParams {
            after: Some(5),
            job_id: Some(JOB.into()),
            limit: Some(100),
        })
        .await
        .map(drop));
    case!("events_follow", |c| c
        .follow_events(EventsFollowParams {
            after: Some(7),
            job_id: None,
        })
        .await);
    out
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/snapshots")
}

#[tokio::test]
async fn rust_client_requests_match_the_shared_snapshots() {
    let update = std::env::var_os("FERRY_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let dir = snapshot_dir();
    let mut drifted = Vec::new();
    for (name, requests) in capture().await {
        let path = dir.join(format!("{name}.json"));
        let actual = Value::Array(requests);
        if update {
            let mut text = serde_json::to_string_pretty(&actual).unwrap();
            text.push('\n');
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let committed: Option<Value> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if committed.as_ref() != Some(&actual) {
            drifted.push(format!(
                "{}: committed {}, sent {actual}",
                path.display(),
                committed.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
            ));
        }
    }
    assert!(
        drifted.is_empty(),
        "the Rust client's requests drifted from the shared snapshots (the Python client is \
         tested against them); if the change is intended, rerun with FERRY_UPDATE_SNAPSHOTS=1 \
         and update the Python client to match:\n{}",
        drifted.join("\n")
    );
}
