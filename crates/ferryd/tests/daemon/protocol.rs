//! Wire-level behaviour on a raw socket: every documented error code with a message that names
//! the problem, and a daemon that keeps serving after garbage.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::support::*;

/// A raw line-level client.
pub struct Raw {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(path: &std::path::Path) -> Raw {
        let s = UnixStream::connect(path).await.unwrap();
        let (r, w) = s.into_split();
        Raw {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// A connection that the daemon serves (`ferry.hello` answered).
    pub async fn connect_served(path: &std::path::Path) -> Raw {
        let mut raw = Raw::connect(path).await;
        assert_eq!(
            raw.call("ferry.hello", json!({})).await["result"]["protocol"],
            1
        );
        raw
    }

    pub async fn send_line(&mut self, line: &[u8]) {
        self.writer.write_all(line).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// The next line, or None at EOF.
    pub async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).await.unwrap();
        (n > 0).then(|| serde_json::from_str(&line).unwrap())
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.send_line(msg.to_string().as_bytes()).await;
        self.recv().await.unwrap()
    }

    /// The error object of a call that must fail.
    pub async fn error(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params).await;
        assert!(r.get("error").is_some(), "{method} should fail: {r}");
        r["error"].clone()
    }
}

#[tokio::test]
async fn malformed_messages_get_documented_codes_and_the_connection_stays_open() {
    let d = daemon();
    let mut raw = Raw::connect(&d.socket).await;
    raw.send_line(b"{not json").await;
    let r = raw.recv().await.unwrap();
    assert_eq!(r["error"]["code"], -32700);
    assert_eq!(r["id"], Value::Null);
    raw.send_line(br#"{"jsonrpc":"2.0","id":7}"#).await;
    assert_eq!(raw.recv().await.unwrap()["error"]["code"], -32600);
    let e = raw.error("no.such.method", json!({})).await;
    assert_eq!(e["code"], -32601);
    assert!(e["message"].as_str().unwrap().contains("no.such.method"));
    // Still serving.
    let r = raw.call("ferry.hello", json!({})).await;
    assert_eq!(r["result"]["protocol"], 1);
    assert_eq!(r["result"]["mode"], "user");
}

#[tokio::test]
async fn overlong_line_is_refused_and_only_that_connection_closes() {
    let d = daemon();
    let mut bystander = Raw::connect(&d.socket).await;
    let mut raw = Raw::connect(&d.socket).await;
    let big = vec![b'x'; ferry_proto::MAX_LINE_BYTES + 1];
    raw.send_line(&big).await;
    let r = raw.recv().await.unwrap();
    assert_eq!(r["error"]["code"], -32600);
    assert_eq!(r["id"], Value::Null);
    assert!(raw.recv().await.is_none(), "the connection is closed");
    assert_eq!(
        bystander.call("ferry.hello", json!({})).await["result"]["protocol"],
        1
    );
}

#[tokio::test]
async fn invalid_params_name_the_field() {
    let d = daemon();
    let mut raw = Raw::connect(&d.socket).await;
    let e = raw
        .error("job.create", json!({"display_name": "x", "colour": "red"}))
        .await;
    assert_eq!(e["code"], -32602);
    assert_eq!(e["data"]["field"], "colour");
    let e = raw.error("job.create", json!({"display_name": 5})).await;
    assert_eq!(e["data"]["field"], "display_name");
    let e = raw
        .error("job.create", json!({"display_name": "x", "files": [{"remote_url": "http://h/x", "local_path": "rel/x"}]}))
        .await;
    assert_eq!(e["code"], -32602);
    assert_eq!(e["data"]["field"], "files[0].local_path");
    let r = raw.call("job.create", json!({"display_name": "x"})).await;
    let id = r["result"]["job_id"].as_str().unwrap().to_string();
    let e = raw
        .error("job.set", json!({"job_id": id, "notify_flags": 64}))
        .await;
    assert_eq!(e["data"]["field"], "notify_flags");
    let e = raw
        .error(
            "job.set",
            json!({"job_id": id, "notify_cmdline": ["relative"]}),
        )
        .await;
    assert_eq!(e["data"]["field"], "notify_cmdline");
}

#[tokio::test]
async fn unknown_job_is_not_found() {
    let d = daemon();
    let mut raw = Raw::connect(&d.socket).await;
    let e = raw
        .error(
            "job.get",
            json!({"job_id": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(e["code"], -32000);
    assert_eq!(e["data"]["kind"], "not_found");
}

#[tokio::test]
async fn unsupported_scheme_and_missing_directory() {
    let d = daemon();
    let mut raw = Raw::connect(&d.socket).await;
    let dir = d.files_dir();
    let e = raw
        .error("job.create", json!({"display_name": "x", "files": [{"remote_url": "ftp://h/x", "local_path": dir.join("x")}]}))
        .await;
    assert_eq!(e["code"], -32004);
    assert!(e["message"].as_str().unwrap().contains("ftp"));
    let missing = dir.join("no-such-dir").join("x");
    let e = raw
        .error("job.create", json!({"display_name": "x", "files": [{"remote_url": "http://h/x", "local_path": missing}]}))
        .await;
    assert_eq!(e["code"], -32005);
    assert_eq!(e["data"]["kind"], "local_io");
    assert!(e["data"]["path"].as_str().unwrap().ends_with("no-such-dir"));
}

#[tokio::test]
async fn limits_name_the_setting() {
    let d = daemon_with(&["--max-jobs-per-user", "2", "--max-files-per-job", "1"]);
    let mut raw = Raw::connect(&d.socket).await;
    let dir = d.files_dir();
    let two = json!([{"remote_url": "http://h/a", "local_path": dir.join("a")}, {"remote_url": "http://h/b", "local_path": dir.join("b")}]);
    let e = raw
        .error("job.create", json!({"display_name": "x", "files": two}))
        .await;
    assert_eq!(e["code"], -32003);
    assert_eq!(e["data"]["limit"], "files_per_job");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--max-files-per-job")
    );
    raw.call("job.create", json!({"display_name": "1"})).await;
    raw.call("job.create", json!({"display_name": "2"})).await;
    let e = raw.error("job.create", json!({"display_name": "3"})).await;
    assert_eq!(e["code"], -32003);
    assert_eq!(e["data"]["limit"], "jobs_per_user");
}

#[tokio::test]
async fn events_follow_replays_then_streams() {
    let d = daemon();
    let c = d.client().await;
    let first = job_with(&c, vec![]).await;
    c.follow_events(ferry_proto::params::EventsFollowParams {
        after: Some(0),
        job_id: None,
    })
    .await
    .unwrap();
    let e = c.next_event().await.unwrap();
    assert_eq!(
        (e.job_id.as_str(), e.kind.name()),
        (first.as_str(), "created")
    );
    let second = job_with(&c, vec![]).await;
    let e = c.next_event().await.unwrap();
    assert_eq!(
        (e.job_id.as_str(), e.kind.name()),
        (second.as_str(), "created")
    );
}

#[tokio::test]
async fn damaged_store_row_is_an_internal_error_naming_the_problem() {
    let d = daemon();
    let c = d.client().await;
    let dir = d.files_dir();
    let id = job_with(&c, vec![spec("http://127.0.0.1:9/x", &dir.join("x"))]).await;
    // Damage the file row behind the daemon's back, through SQLite itself.
    let db = rusqlite::Connection::open(d.state_dir.join("ferry.db")).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE files SET body = '{not json' WHERE job_id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);
    let mut raw = Raw::connect(&d.socket).await;
    let e = raw.error("job.files", json!({"job_id": id})).await;
    assert_eq!(e["code"], -32099);
    assert_eq!(e["data"]["kind"], "internal");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("malformed file row"),
        "{e}"
    );
    // The daemon still serves.
    assert_eq!(
        raw.call("ferry.hello", json!({})).await["result"]["protocol"],
        1
    );
}

/// A follower that never reads must not make the daemon buffer without bound: past
/// `--max-follow-backlog` unsent bytes its connection is closed, and everyone else is served.
#[tokio::test]
async fn a_follower_that_does_not_read_is_closed_and_others_are_served() {
    let d = daemon_with(&["--max-follow-backlog", "65536"]);
    let c = d.client().await;
    create_jobs(&c, 6000, 6000).await;
    let mut raw = Raw::connect(&d.socket).await;
    // Replays 6 000 `created` events (far beyond the socket's buffers) to a reader that waits.
    let follow =
        json!({"jsonrpc": "2.0", "id": 1, "method": "events.follow", "params": {"after": 0}});
    raw.send_line(follow.to_string().as_bytes()).await;
    wait_log(
        &d,
        "does not read its followed events",
        1,
        "the daemon never closed the idle follower",
    );
    // What was sent before the close can still be read; then the connection ends.
    let mut lines = 0;
    while raw.recv().await.is_some() {
        lines += 1;
    }
    assert!(
        lines < 6000,
        "the whole replay was delivered ({lines} lines)"
    );
    assert_eq!(c.hello().await.expect("ferry.hello").protocol, 1);
}
