//! Garbage on the wire, as a property over ONE live daemon: random lines
//! (random bytes with invalid UTF-8, random JSON values, near-valid JSON-RPC with real and
//! made-up methods and params, lines just under and over the 1 MiB limit) sent over several
//! connections at once never crash the daemon and never disturb another client's session. A
//! bystander connection keeps doing real work meanwhile and must get correct answers; every
//! answer a garbage connection gets is a well-formed JSON-RPC message; a connection stays open
//! unless it sent an overlong line; and after each case the daemon still answers `ferry.hello`
//! on a new connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferry_client::Client;
use ferry_proto::params::{CreateParams, ListParams};
use ferry_proto::{JobState, MAX_LINE_BYTES};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::protocol::Raw;
use crate::support::*;

/// Every method of protocol 1, plus callbacks a client must never send to the daemon.
const METHODS: &[&str] = &[
    "ferry.hello",
    "job.create",
    "job.add_files",
    "job.get",
    "job.files",
    "job.get_error",
    "job.list",
    "job.resume",
    "job.suspend",
    "job.cancel",
    "job.complete",
    "job.set",
    "job.set_notify_interface",
    "job.clear_notify_interface",
    "job.take_ownership",
    "file.set_validation_state",
    "handler.register",
    "handler.unregister",
    "handler.list",
    "handler.attach",
    "events.read",
    "events.follow",
    "events.unfollow",
    "callback.job_transferred",
    "callback.job_error",
];

/// Field names of the real params, so near-valid params reach the per-field checks.
const FIELDS: &[&str] = &[
    "job_id",
    "display_name",
    "description",
    "type",
    "priority",
    "files",
    "remote_url",
    "local_path",
    "sha256",
    "ranges",
    "offset",
    "length",
    "notify_flags",
    "notify_cmdline",
    "notify_handler",
    "minimum_retry_delay_s",
    "custom_headers",
    "credentials",
    "proxy",
    "all_users",
    "states",
    "include_final",
    "after",
    "limit",
    "file_index",
    "valid",
    "name",
    "cmdline",
    "token",
    "client",
];

/// String values that look like what the fields want. URLs point nowhere reachable (port 9 on
/// loopback refuses), so a job that happens to be valid never sends traffic anywhere else.
const STRINGS: &[&str] = &[
    "",
    "x",
    "high",
    "foreground",
    "download",
    "upload",
    "queued",
    "suspended",
    "http://127.0.0.1:9/x",
    "https://127.0.0.1:9/y",
    "ftp://127.0.0.1:9/z",
    "file:///dev/null",
    "not a url",
    "/nonexistent-dir/x",
    "/",
    "relative/path",
    "00000000-0000-0000-0000-000000000000",
    "basic",
    "\u{0}",
    "é\u{202e}🦀",
];

/// One line a garbage connection sends (a `\n` is added after it).
#[derive(Debug, Clone)]
enum Line {
    /// Raw bytes: invalid UTF-8, control bytes, embedded newlines (several lines then).
    Bytes(Vec<u8>),
    /// Any JSON value (arrays, numbers, strings, objects).
    Json(Value),
    /// A JSON-RPC-shaped object whose parts may each be wrong.
    Rpc(Value),
    /// A valid request cut short.
    Cut(Value, usize),
    /// `len` copies of a byte, or a request whose `display_name` is that long.
    Long {
        /// Bytes of filler.
        len: usize,
        /// The filler (never `\n`).
        byte: u8,
        /// Wrapped in a `job.create` request rather than bare.
        request: bool,
    },
}

impl Line {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Line::Bytes(b) => b.clone(),
            Line::Json(v) | Line::Rpc(v) => v.to_string().into_bytes(),
            Line::Cut(v, at) => {
                let s = v.to_string().into_bytes();
                s[..(*at).min(s.len())].to_vec()
            }
            Line::Long { len, byte, request } => {
                let filler = if *request {
                    // Keep it one JSON string: letters only.
                    vec![b'a' + byte % 26; *len]
                } else {
                    vec![*byte; *len]
                };
                if !*request {
                    return filler;
                }
                let mut out =
                    br#"{"jsonrpc":"2.0","id":"long","method":"job.create","params":{"display_name":""#
                        .to_vec();
                out.extend_from_slice(&filler);
                out.extend_from_slice(br#""}}"#);
                out
            }
        }
    }

    /// Whether the daemon must refuse it and close the connection.
    fn overlong(&self) -> bool {
        self.bytes().len() > MAX_LINE_BYTES
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(STRINGS).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON-RPC object: mostly right, each part sometimes wrong or missing.
fn rpc() -> impl Strategy<Value = Value> {
    let jsonrpc = prop_oneof![8 => Just(json!("2.0")), 1 => json_leaf()];
    let id = prop_oneof![
        3 => any::<u32>().prop_map(|n| Some(json!(n))),
        2 => Just(None),
        1 => json_value().prop_map(Some),
    ];
    let method = prop_oneof![
        6 => prop::sample::select(METHODS).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => json_leaf(),
    ];
    let params = prop_oneof![
        4 => prop::collection::btree_map(key(), json_value(), 0..5)
            .prop_map(|m| Some(Value::Object(m.into_iter().collect()))),
        1 => Just(None),
        1 => json_value().prop_map(Some),
    ];
    let result = prop::option::weighted(0.1, json_value());
    (jsonrpc, id, method, params, result).prop_map(|(jsonrpc, id, method, params, result)| {
        let mut m = Map::new();
        m.insert("jsonrpc".into(), jsonrpc);
        if let Some(id) = id {
            m.insert("id".into(), id);
        }
        match result {
            // Sometimes a response to a call the daemon never made.
            Some(r) => {
                m.insert("result".into(), r);
            }
            None => {
                m.insert("method".into(), method);
                if let Some(p) = params {
                    m.insert("params".into(), p);
                }
            }
        }
        Value::Object(m)
    })
}

fn line() -> impl Strategy<Value = Line> {
    let long_len = prop_oneof![
        64 * 1024..256 * 1024usize,
        MAX_LINE_BYTES - 100..MAX_LINE_BYTES + 100,
        MAX_LINE_BYTES + 1..MAX_LINE_BYTES + 200_000,
    ];
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Line::Bytes),
        3 => json_value().prop_map(Line::Json),
        8 => rpc().prop_map(Line::Rpc),
        2 => (rpc(), 0..200usize).prop_map(|(v, at)| Line::Cut(v, at)),
        1 => (long_len, any::<u8>(), any::<bool>()).prop_map(|(len, byte, request)| Line::Long {
            len,
            byte: if byte == b'\n' { b'x' } else { byte },
            request,
        }),
    ]
}

/// One case: up to four connections, each with up to eight lines.
fn case() -> impl Strategy<Value = Vec<Vec<Line>>> {
    prop::collection::vec(prop::collection::vec(line(), 1..8), 1..=4)
}

/// Sends the lines and then a `ferry.hello` fence; reads every answer meanwhile and checks it.
/// Returns how many messages the daemon sent.
async fn garbage_connection(socket: std::path::PathBuf, lines: Vec<Line>, fence: String) -> u64 {
    let stream = UnixStream::connect(&socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    let closes = lines.iter().any(Line::overlong);
    // The write half stays open until the answers are read: dropping it sends EOF, and the
    // daemon drops requests still queued when a connection's input ends.
    let (read_all, keep_open) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn({
        let fence = fence.clone();
        async move {
            for l in &lines {
                let mut bytes = l.bytes();
                bytes.push(b'\n');
                // After an overlong line the daemon closes; later writes may fail.
                if w.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let hello = json!({"jsonrpc": "2.0", "id": fence, "method": "ferry.hello"});
            let _ = w.write_all(format!("{hello}\n").as_bytes()).await;
            let _ = keep_open.await;
        }
    });
    let mut reader = BufReader::new(r);
    let mut saw_fence = false;
    let mut saw_overlong_error = false;
    let mut buf = Vec::new();
    let mut received = 0;
    loop {
        buf.clear();
        let n = match reader.read_until(b'\n', &mut buf).await {
            Ok(n) => n,
            // A reset after the daemon closed on an overlong line (our unread writes).
            Err(e) if closes => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                break;
            }
            Err(e) => panic!("reading answers: {e}"),
        };
        if n == 0 {
            break;
        }
        let msg: Value = serde_json::from_slice(&buf).unwrap_or_else(|e| {
            panic!(
                "the daemon sent a line that is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&buf)
            )
        });
        received += 1;
        assert_eq!(msg["jsonrpc"], "2.0", "{msg}");
        let is_answer = msg.get("result").is_some() != msg.get("error").is_some();
        let is_notification = msg.get("method").is_some() && msg.get("id").is_none();
        assert!(
            is_answer || is_notification,
            "not a JSON-RPC message: {msg}"
        );
        if let Some(e) = msg.get("error") {
            assert!(e["code"].is_i64(), "{msg}");
            assert!(!e["message"].as_str().unwrap_or("").is_empty(), "{msg}");
            if e["code"] == -32600 && msg["id"].is_null() {
                saw_overlong_error |= e["message"].as_str().unwrap_or("").contains("longer");
            }
        }
        if msg["id"] == json!(fence) {
            assert_eq!(msg["result"]["protocol"], 1, "{msg}");
            saw_fence = true;
            break;
        }
    }
    if closes {
        assert!(
            !saw_fence,
            "the connection should have closed at the overlong line"
        );
        assert!(
            saw_overlong_error,
            "the overlong line was not answered before closing"
        );
    } else {
        assert!(
            saw_fence,
            "the connection closed without answering the fence"
        );
    }
    let _ = read_all.send(());
    let _ = writer.await;
    received
}

/// Real work on its own connection while garbage flies: every answer must be right.
async fn bystander(c: &Client, case: u64, stop: &AtomicBool) -> u64 {
    let mut rounds = 0;
    loop {
        let name = format!("bystander-{case}-{rounds}");
        let id = c
            .create(CreateParams {
                display_name: name.clone(),
                ..CreateParams::default()
            })
            .await
            .expect("job.create");
        let job = c.get(&id).await.expect("job.get");
        assert_eq!(
            (
                job.job_id.as_str(),
                job.settings.display_name.as_str(),
                job.state
            ),
            (id.as_str(), name.as_str(), JobState::Suspended)
        );
        let list = c.list(ListParams::default()).await.expect("job.list");
        assert!(
            list.jobs
                .iter()
                .any(|j| j.job_id == id && j.settings.display_name == name),
            "job.list lacks the bystander's job {id}"
        );
        assert_eq!(
            c.cancel(&id).await.expect("job.cancel").state,
            JobState::Cancelled
        );
        assert_eq!(
            c.get(&id).await.expect("job.get").state,
            JobState::Cancelled
        );
        rounds += 1;
        if stop.load(Ordering::Acquire) {
            return rounds;
        }
    }
}

#[test]
fn random_lines_never_crash_the_daemon_nor_disturb_a_bystander() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let d = daemon();
    let socket = d.socket.clone();
    let bystander_client = Arc::new(rt.block_on(d.client()));
    let cases = Arc::new(AtomicU64::new(0));
    // Totals, to show what the cases covered: lines, of them over 64 KiB, of them over the
    // limit; messages the daemon sent back; bystander rounds.
    let stats: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let result = runner.run(&case(), |conns| {
        let n = cases.fetch_add(1, Ordering::Relaxed);
        let socket = socket.clone();
        let c = bystander_client.clone();
        let stats = stats.clone();
        for l in conns.iter().flatten() {
            let len = l.bytes().len();
            stats[0].fetch_add(1, Ordering::Relaxed);
            stats[1].fetch_add(u64::from(len > 64 * 1024), Ordering::Relaxed);
            stats[2].fetch_add(u64::from(len > MAX_LINE_BYTES), Ordering::Relaxed);
        }
        rt.block_on(async move {
            let work = async {
                let stop = AtomicBool::new(false);
                let garbage = async {
                    let tasks: Vec<_> = conns
                        .into_iter()
                        .enumerate()
                        .map(|(i, lines)| {
                            tokio::spawn(garbage_connection(
                                socket.clone(),
                                lines,
                                format!("fence-{n}-{i}"),
                            ))
                        })
                        .collect();
                    for t in tasks {
                        match t.await {
                            Ok(n) => {
                                stats[3].fetch_add(n, Ordering::Relaxed);
                            }
                            // A panic in a connection's checks fails the case with its message.
                            Err(e) => match e.try_into_panic() {
                                Ok(p) => std::panic::resume_unwind(p),
                                Err(e) => panic!("{e}"),
                            },
                        }
                    }
                    stop.store(true, Ordering::Release);
                };
                let ((), rounds) = tokio::join!(garbage, bystander(&c, n, &stop));
                assert!(rounds >= 1);
                stats[4].fetch_add(rounds, Ordering::Relaxed);
                // The daemon still answers a newcomer.
                let mut fresh = Raw::connect(&socket).await;
                let hello = fresh.call("ferry.hello", json!({})).await;
                assert_eq!(hello["result"]["protocol"], 1, "{hello}");
            };
            tokio::time::timeout(Duration::from_secs(30), work)
                .await
                .expect("a case finished within 30 s (no hang)");
        });
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The bystander's one connection lived through every case.
    assert!(!bystander_client.is_closed());
    let [lines, long, overlong, answers, rounds] =
        stats.each_ref().map(|a| a.load(Ordering::Relaxed));
    eprintln!(
        "garbage: {} cases in {:.1?}: {lines} lines ({long} over 64 KiB, {overlong} over the \
         limit), {answers} messages back, {rounds} bystander rounds",
        cases.load(Ordering::Relaxed),
        started.elapsed()
    );
}
