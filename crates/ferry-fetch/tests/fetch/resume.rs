//! Resume: Range + If-Range, restarts when the server or the file does not fit, and the
//! durable prefix left by interrupted transfers.

use std::sync::Arc;

use ferry_fetch::{FetchErrorKind, FetchEvent, Validator};
use ferry_testkit::http::Behavior;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support::{Harness, LIMIT, read};

const LEN: usize = 400_000;
const K: u64 = 123_457;

/// A request resuming at K with the first K bytes already on disk.
fn resume_request(
    h: &Harness,
    path: &str,
    prefix: &[u8],
    validator: Validator,
) -> ferry_fetch::FetchRequest {
    let mut req = h.request(path);
    std::fs::write(&req.temp_path, &prefix[..K as usize]).unwrap();
    req.offset = K;
    req.validator = Some(validator);
    req.expected_total = Some(LEN as u64);
    req
}

#[tokio::test]
async fn resume_sends_range_and_if_range_and_fetches_only_the_rest() {
    let h = Harness::new().await;
    let c = h.serve("/r", 10, LEN);
    let etag = h.server.etag("/r").unwrap();
    let mut req = resume_request(&h, "/r", &c.bytes, Validator::ETag(etag.clone()));
    req.sha256 = Some(c.sha256.clone());
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(read(&req.temp_path), c.bytes);
    assert!(!out.restarted());
    let log = h.server.requests_for("/r");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].range.as_deref(), Some("bytes=123457-"));
    assert_eq!(log[0].if_range.as_deref(), Some(etag.as_str()));
    assert_eq!(log[0].status, 206);
    assert_eq!(log[0].body_bytes_sent, LEN as u64 - K);
}

/// Resumes `path` at K with the origin's piece hashes recorded for the prefix, after changing
/// 100 bytes of it on disk when `tamper`; checks the result is the origin's content and piece
/// list, and returns whether the fetch restarted and the `Range` of its request.
async fn resume_with_recorded_pieces(
    path: &str,
    seed: u64,
    tamper: bool,
) -> (bool, Option<String>) {
    let h = Harness::new().await;
    let c = h.serve(path, seed, LEN);
    let etag = h.server.etag(path).unwrap();
    let mut on_disk = c.bytes.to_vec();
    if tamper {
        // Someone else's bytes where the recorded ones were.
        on_disk[1000..1100].fill(0);
    }
    let mut req = resume_request(&h, path, &on_disk, Validator::ETag(etag));
    req.pieces = Some(ferry_peer::pieces::list_of(&c.bytes[..K as usize]));
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), c.bytes);
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    let list = ferry_peer::pieces::list_of(&c.bytes);
    assert_eq!(out.done().pieces.as_deref(), Some(list.as_str()));
    (
        out.restarted(),
        h.server.requests_for(path)[0].range.clone(),
    )
}

#[tokio::test]
async fn a_prefix_matching_its_recorded_pieces_is_resumed_and_keeps_its_provenance() {
    let resumed = resume_with_recorded_pieces("/pm", 40, false).await;
    assert_eq!(resumed, (false, Some("bytes=123457-".into())));
}

#[tokio::test]
async fn a_prefix_changed_since_its_pieces_were_recorded_is_fetched_again() {
    let resumed = resume_with_recorded_pieces("/pt", 41, true).await;
    assert_eq!(resumed, (true, None), "the changed prefix is dropped");
}

#[tokio::test]
async fn a_prefix_without_recorded_pieces_is_resumed_without_provenance() {
    let h = Harness::new().await;
    let c = h.serve("/pn", 42, LEN);
    let etag = h.server.etag("/pn").unwrap();
    let req = resume_request(&h, "/pn", &c.bytes, Validator::ETag(etag));
    let out = h.run(&req).await;
    assert!(!out.restarted());
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(
        out.done().pieces,
        None,
        "bytes of unknown origin: never published"
    );
    assert!(out.events.iter().all(|e| !matches!(
        e,
        FetchEvent::Checkpoint {
            pieces: Some(_),
            ..
        }
    )));
}

#[tokio::test]
async fn resume_with_last_modified() {
    let h = Harness::new().await;
    let c = h.serve("/lm", 11, LEN);
    let lm = h.server.last_modified("/lm").unwrap();
    let req = resume_request(&h, "/lm", &c.bytes, Validator::LastModified(lm.clone()));
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    let log = h.server.requests_for("/lm");
    assert_eq!(
        (log[0].status, log[0].if_range.as_deref()),
        (206, Some(lm.as_str()))
    );
    // The answer's strong ETag now validates the file.
    assert_eq!(
        out.done().validator,
        Some(Validator::ETag(h.server.etag("/lm").unwrap()))
    );
}

#[tokio::test]
async fn weak_or_missing_validators_mean_no_range() {
    let h = Harness::new().await;
    let c = h.serve("/w", 12, LEN);
    // A bogus prefix: it must be dropped, since nothing proves it belongs to this file.
    let req = resume_request(
        &h,
        "/w",
        &vec![0u8; LEN],
        Validator::ETag("W/\"weak\"".into()),
    );
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), c.bytes);
    assert!(out.restarted());
    assert_eq!(h.server.requests_for("/w")[0].range, None);
}

#[tokio::test]
async fn server_ignoring_range_restarts_from_zero() {
    let h = Harness::new().await;
    let c = h.serve("/ign", 13, LEN);
    h.server.set_behavior(
        "/ign",
        Behavior {
            ignore_range: true,
            ..Default::default()
        },
    );
    let req = resume_request(
        &h,
        "/ign",
        &c.bytes,
        Validator::ETag(h.server.etag("/ign").unwrap()),
    );
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(read(&req.temp_path), c.bytes);
    assert_eq!(out.checkpoints()[0], (0, true));
    let log = h.server.requests_for("/ign");
    assert_eq!((log.len(), log[0].status), (1, 200));
}

#[tokio::test]
async fn changed_etag_restarts_and_yields_the_new_content() {
    let h = Harness::new().await;
    let old = h.serve("/e", 14, LEN);
    let old_etag = h.server.etag("/e").unwrap();
    // The file is replaced on the server after the first K bytes were fetched.
    let new = h.serve("/e", 15, LEN + 5);
    let mut req = resume_request(&h, "/e", &old.bytes, Validator::ETag(old_etag));
    req.sha256 = Some(new.sha256.clone());
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), new.bytes);
    assert!(out.restarted());
    assert_eq!(h.server.requests_for("/e")[0].status, 200);
}

#[tokio::test]
async fn etag_changing_on_every_request_restarts() {
    let h = Harness::new().await;
    let c = h.serve("/ec", 16, LEN);
    h.server.set_behavior(
        "/ec",
        Behavior {
            etag_changes_every_request: true,
            ..Default::default()
        },
    );
    let req = resume_request(
        &h,
        "/ec",
        &c.bytes,
        Validator::ETag(h.server.etag("/ec").unwrap()),
    );
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), c.bytes);
    assert!(out.restarted());
    // The checkpoint records the validator of the answer actually received.
    let served = h.server.requests_for("/ec");
    assert_eq!(served[0].status, 200);
    match out.last_checkpoint() {
        FetchEvent::Checkpoint {
            validator: Some(Validator::ETag(e)),
            ..
        } => {
            assert!(e.ends_with("-1\""), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn already_complete_file_is_confirmed_by_416() {
    let h = Harness::new().await;
    let c = h.serve("/done", 17, LEN);
    let mut req = h.request("/done");
    std::fs::write(&req.temp_path, &c.bytes).unwrap();
    req.offset = LEN as u64;
    req.validator = Some(Validator::ETag(h.server.etag("/done").unwrap()));
    req.sha256 = Some(c.sha256.clone());
    let out = h.run(&req).await;
    assert_eq!(out.done().bytes, LEN as u64);
    assert_eq!(h.server.requests_for("/done")[0].status, 416);
    assert!(!out.restarted());
}

#[tokio::test]
async fn short_body_is_connection_reset_and_keeps_the_durable_prefix() {
    let h = Harness::new().await;
    let c = h.serve("/cut", 18, LEN);
    h.server.set_behavior(
        "/cut",
        Behavior {
            cut_after: Some(100_000),
            ..Default::default()
        },
    );
    let mut req = h.request("/cut");
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::ConnectionReset);
    assert!(err.transient);
    assert_eq!(err.context, ferry_proto::ErrorContext::GeneralTransport);
    let FetchEvent::Checkpoint {
        offset, validator, ..
    } = out.last_checkpoint()
    else {
        unreachable!()
    };
    assert_eq!(offset, 100_000);
    let on_disk = read(&req.temp_path);
    assert_eq!(on_disk, c.bytes[..100_000]);

    // The retry resumes exactly there.
    h.server.clear_behavior("/cut");
    req.offset = offset;
    req.validator = validator;
    req.sha256 = Some(c.sha256.clone());
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    let log = h.server.requests_for("/cut");
    assert_eq!(log[1].range.as_deref(), Some("bytes=100000-"));
}

#[tokio::test]
async fn stall_is_detected_within_the_stall_timeout() {
    let h = Harness::new().await;
    let c = h.serve("/stall", 19, LEN);
    h.server.set_behavior(
        "/stall",
        Behavior {
            stall_after: Some(30_000),
            ..Default::default()
        },
    );
    let mut req = h.request("/stall");
    req.stall_timeout = std::time::Duration::from_millis(300);
    let started = std::time::Instant::now();
    let out = h.run(&req).await;
    let elapsed = started.elapsed();
    let err = out.err();
    assert_eq!((err.kind, err.transient), (FetchErrorKind::Stalled, true));
    assert_eq!(err.context, ferry_proto::ErrorContext::GeneralTransport);
    assert!(elapsed >= req.stall_timeout, "{elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
    assert!(matches!(
        out.last_checkpoint(),
        FetchEvent::Checkpoint { offset: 30_000, .. }
    ));
    assert_eq!(read(&req.temp_path), c.bytes[..30_000]);
}

#[tokio::test]
async fn cancellation_syncs_and_reports_a_final_checkpoint() {
    let h = Harness::new().await;
    let c = h.serve("/cancel", 20, LEN);
    // The server sends 50 000 bytes and then holds the rest back.
    h.server.set_behavior(
        "/cancel",
        Behavior {
            stall_after: Some(50_000),
            ..Default::default()
        },
    );
    let mut req = h.request("/cancel");
    req.checkpoint_bytes = 50_000;
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fetch = h.fetcher.fetch(&req, &tx, &cancel);
    let driver = async {
        let mut seen = Vec::new();
        while let Some(e) = rx.recv().await {
            let reached = matches!(e, FetchEvent::Checkpoint { offset: 50_000, .. });
            seen.push(e);
            if reached {
                cancel.cancel();
                break;
            }
        }
        seen
    };
    let (result, _seen) = tokio::time::timeout(LIMIT, async { tokio::join!(fetch, driver) })
        .await
        .unwrap();
    drop(tx);
    let err = result.unwrap_err();
    assert!(err.is_cancelled());
    assert_eq!(err.kind, FetchErrorKind::Cancelled);
    let mut last = None;
    while let Some(e) = rx.recv().await {
        last = Some(e);
    }
    assert!(matches!(
        last,
        Some(FetchEvent::Checkpoint {
            offset: 50_000,
            restarted: false,
            ..
        })
    ));
    assert_eq!(read(&req.temp_path), c.bytes[..50_000]);
}

#[tokio::test]
async fn gated_body_can_be_cancelled_before_any_byte() {
    let h = Harness::new().await;
    h.serve("/gate", 21, LEN);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    h.server.set_behavior(
        "/gate",
        Behavior {
            gate: Some(gate),
            ..Default::default()
        },
    );
    let req = h.request("/gate");
    let cancel = CancellationToken::new();
    let fetch = h.run_with(&req, &cancel);
    let driver = async {
        // The request reached the server and its body is held: now cancel.
        let log = h.server.wait_for_requests("/gate", 1, LIMIT).await;
        assert_eq!(log.len(), 1);
        cancel.cancel();
    };
    let (out, ()) = tokio::join!(fetch, driver);
    assert!(out.err().is_cancelled());
    assert!(matches!(
        out.last_checkpoint(),
        FetchEvent::Checkpoint { offset: 0, .. }
    ));
}
