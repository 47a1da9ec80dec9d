//! Ranged files (BITS `AddFileWithRanges`): ranges concatenated in the given order, resume in
//! the middle of a range, servers without range support, changed files, ranges past the end,
//! open-ended ranges, and `file://` sources.

use ferry_fetch::{FetchErrorKind, FetchEvent, FetchRequest, Validator};
use ferry_proto::{ErrorContext, FileRange};
use ferry_testkit::content::{TestContent, sha256_hex};
use ferry_testkit::http::Behavior;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::support::{Harness, LIMIT, read};

const LEN: usize = 400_000;

fn range(offset: u64, length: Option<u64>) -> FileRange {
    FileRange { offset, length }
}

/// The bytes the ranges of `content` concatenate to.
fn concat(content: &[u8], ranges: &[FileRange]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in ranges {
        let start = r.offset as usize;
        let end = r.length.map_or(content.len(), |l| start + l as usize);
        out.extend_from_slice(&content[start..end]);
    }
    out
}

/// A request for `ranges` of `path` on the test server.
fn ranged_request(h: &Harness, path: &str, ranges: &[FileRange]) -> FetchRequest {
    let mut req = h.request(path);
    req.ranges = Some(ranges.to_vec());
    req
}

fn checkpoint_totals(events: &[FetchEvent]) -> Vec<Option<u64>> {
    events
        .iter()
        .filter_map(|e| match e {
            FetchEvent::Checkpoint { total, .. } => Some(*total),
            FetchEvent::Progress { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn ranges_are_concatenated_in_the_given_order() {
    let h = Harness::new().await;
    let c = h.serve("/r", 30, LEN);
    let etag = h.server.etag("/r").unwrap();
    let ranges = [
        range(300_000, Some(1000)),
        range(0, Some(100)),
        range(50_000, Some(20_000)),
    ];
    let want = concat(&c.bytes, &ranges);
    let mut req = ranged_request(&h, "/r", &ranges);
    req.sha256 = Some(sha256_hex(&want));
    let out = h.run(&req).await;
    let done = out.done();
    assert_eq!(done.bytes, 21_100);
    assert_eq!(done.sha256, Some(sha256_hex(&want)));
    assert_eq!(read(&req.temp_path), want);
    assert!(!out.restarted());
    // The size is known from the start: every checkpoint reports it.
    assert!(
        checkpoint_totals(&out.events)
            .iter()
            .all(|t| *t == Some(21_100))
    );
    let log = h.server.requests_for("/r");
    let asked: Vec<_> = log
        .iter()
        .map(|r| (r.range.as_deref(), r.if_range.as_deref(), r.status))
        .collect();
    assert_eq!(
        asked,
        vec![
            (Some("bytes=300000-300999"), None, 206),
            (Some("bytes=0-99"), Some(etag.as_str()), 206),
            (Some("bytes=50000-69999"), Some(etag.as_str()), 206),
        ]
    );
}

#[tokio::test]
async fn resume_in_the_middle_of_the_second_range() {
    let h = Harness::new().await;
    let c = h.serve("/slow", 31, LEN);
    h.server.set_behavior(
        "/slow",
        Behavior {
            rate_bytes_per_sec: Some(400_000),
            ..Behavior::default()
        },
    );
    let ranges = [range(1000, Some(50_000)), range(200_000, Some(150_000))];
    let want = concat(&c.bytes, &ranges);
    let mut req = ranged_request(&h, "/slow", &ranges);
    req.checkpoint_bytes = 10_000;

    // Cancel once a checkpoint lies inside the second range.
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fetch = h.fetcher.fetch(&req, &tx, &cancel);
    let driver = async {
        while let Some(e) = rx.recv().await {
            if matches!(e, FetchEvent::Checkpoint { offset, .. } if offset > 60_000) {
                cancel.cancel();
                break;
            }
        }
    };
    let (result, ()) = tokio::time::timeout(LIMIT, async { tokio::join!(fetch, driver) })
        .await
        .unwrap();
    assert!(result.unwrap_err().is_cancelled());
    drop(tx);
    let mut last = None;
    while let Some(e) = rx.recv().await {
        if let FetchEvent::Checkpoint {
            offset,
            total,
            validator,
            ..
        } = e
        {
            last = Some((offset, total, validator));
        }
    }
    let (offset, total, validator) = last.expect("a final checkpoint after the cancel");
    assert!(offset > 60_000 && offset < 200_000, "{offset}");
    assert_eq!(total, Some(200_000));
    assert_eq!(read(&req.temp_path), want[..offset as usize]);

    // The next attempt asks for exactly the rest of the second range.
    h.server.clear_behavior("/slow");
    let before = h.server.requests_for("/slow").len();
    req.offset = offset;
    req.validator = validator;
    req.expected_total = total;
    req.sha256 = Some(sha256_hex(&want));
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256, Some(sha256_hex(&want)));
    assert_eq!(read(&req.temp_path), want);
    assert!(!out.restarted());
    let log = h.server.requests_for("/slow");
    assert_eq!(log.len(), before + 1);
    let resumed_at = 200_000 + (offset - 50_000);
    assert_eq!(
        log[before].range.as_deref(),
        Some(format!("bytes={resumed_at}-349999").as_str())
    );
    assert_eq!(
        log[before].if_range.as_deref(),
        h.server.etag("/slow").as_deref()
    );
    assert_eq!(log[before].status, 206);
}

#[tokio::test]
async fn server_ignoring_ranges_is_range_unsupported() {
    let h = Harness::new().await;
    h.serve("/ign", 32, LEN);
    h.server.set_behavior(
        "/ign",
        Behavior {
            ignore_range: true,
            ..Behavior::default()
        },
    );
    let req = ranged_request(&h, "/ign", &[range(10, Some(100)), range(500, Some(10))]);
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::RangeUnsupported);
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    // Not a byte of the whole-file answer was spliced in.
    assert!(read(&req.temp_path).is_empty());
    let log = h.server.requests_for("/ign");
    assert_eq!((log.len(), log[0].status), (1, 200));
}

#[tokio::test]
async fn server_ignoring_ranges_on_resume_restarts_then_fails() {
    let h = Harness::new().await;
    let c = h.serve("/ign2", 33, LEN);
    let ranges = [range(0, Some(1000)), range(5000, Some(1000))];
    let want = concat(&c.bytes, &ranges);
    let etag = h.server.etag("/ign2").unwrap();
    h.server.set_behavior(
        "/ign2",
        Behavior {
            ignore_range: true,
            ..Behavior::default()
        },
    );
    let mut req = ranged_request(&h, "/ign2", &ranges);
    std::fs::write(&req.temp_path, &want[..1500]).unwrap();
    req.offset = 1500;
    req.validator = Some(Validator::ETag(etag.clone()));
    let out = h.run(&req).await;
    // A 200 to If-Range looks like a changed file: start over, without If-Range; the 200 to
    // that is the real verdict.
    assert_eq!(out.err().kind, FetchErrorKind::RangeUnsupported);
    assert!(out.restarted());
    let log = h.server.requests_for("/ign2");
    let asked: Vec<_> = log
        .iter()
        .map(|r| (r.range.as_deref(), r.if_range.as_deref()))
        .collect();
    assert_eq!(
        asked,
        vec![
            (Some("bytes=5500-5999"), Some(etag.as_str())),
            (Some("bytes=0-999"), None)
        ]
    );
    assert!(read(&req.temp_path).is_empty());
}

#[tokio::test]
async fn changed_etag_restarts_from_zero_and_yields_the_new_content() {
    let h = Harness::new().await;
    let old = h.serve("/e", 34, LEN);
    let old_etag = h.server.etag("/e").unwrap();
    let ranges = [range(100_000, Some(30_000)), range(10, Some(40_000))];
    // The remote file is replaced after part of the second range arrived.
    let new = h.serve("/e", 35, LEN);
    let new_etag = h.server.etag("/e").unwrap();
    let want = concat(&new.bytes, &ranges);
    let mut req = ranged_request(&h, "/e", &ranges);
    std::fs::write(&req.temp_path, &concat(&old.bytes, &ranges)[..45_000]).unwrap();
    req.offset = 45_000;
    req.validator = Some(Validator::ETag(old_etag.clone()));
    req.expected_total = Some(70_000);
    req.sha256 = Some(sha256_hex(&want));
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256, Some(sha256_hex(&want)));
    assert_eq!(read(&req.temp_path), want);
    assert_eq!(out.checkpoints()[0], (0, true));
    let log = h.server.requests_for("/e");
    let asked: Vec<_> = log
        .iter()
        .map(|r| (r.range.as_deref(), r.if_range.as_deref(), r.status))
        .collect();
    assert_eq!(
        asked,
        vec![
            (Some("bytes=15010-40009"), Some(old_etag.as_str()), 200),
            (Some("bytes=100000-129999"), None, 206),
            (Some("bytes=10-40009"), Some(new_etag.as_str()), 206),
        ]
    );
}

#[tokio::test]
async fn etag_changing_on_every_request_restarts_a_single_range() {
    let h = Harness::new().await;
    let c = h.serve("/ec", 36, LEN);
    h.server.set_behavior(
        "/ec",
        Behavior {
            etag_changes_every_request: true,
            ..Behavior::default()
        },
    );
    let ranges = [range(1000, Some(100_000))];
    let want = concat(&c.bytes, &ranges);
    let mut req = ranged_request(&h, "/ec", &ranges);
    std::fs::write(&req.temp_path, &want[..30_000]).unwrap();
    req.offset = 30_000;
    req.validator = Some(Validator::ETag(h.server.etag("/ec").unwrap()));
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), want);
    assert!(out.restarted());
    let log = h.server.requests_for("/ec");
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].range.as_deref(), log[0].status),
        (Some("bytes=31000-100999"), 200)
    );
    assert_eq!(
        (log[1].range.as_deref(), log[1].if_range.as_deref()),
        (Some("bytes=1000-100999"), None)
    );
}

#[tokio::test]
async fn range_beyond_the_end_is_invalid_range() {
    let h = Harness::new().await;
    h.serve("/short", 37, 10_000);
    // Range 1 starts past the end: known from the first answer's size, before any body byte.
    let req = ranged_request(
        &h,
        "/short",
        &[range(0, Some(100)), range(20_000, Some(10))],
    );
    let out = h.run(&req).await;
    let err = out.err();
    assert_eq!(
        (err.kind, err.context, err.transient),
        (
            FetchErrorKind::InvalidRange,
            ErrorContext::RemoteFile,
            false
        )
    );
    assert!(err.description.contains("range 1"), "{}", err.description);
    assert!(read(&req.temp_path).is_empty());

    // The first range starts past the end: the server answers 416.
    let req = ranged_request(&h, "/short", &[range(10_000, None)]);
    let out = h.run(&req).await;
    assert_eq!(out.err().kind, FetchErrorKind::InvalidRange);
    assert_eq!(h.server.requests_for("/short").last().unwrap().status, 416);

    // Starts inside, ends past the end: the server cuts the answer at the end.
    let req = ranged_request(&h, "/short", &[range(9_990, Some(20))]);
    let out = h.run(&req).await;
    assert_eq!(out.err().kind, FetchErrorKind::InvalidRange);
    assert!(read(&req.temp_path).is_empty());
}

#[tokio::test]
async fn open_ended_last_range_reaches_the_end() {
    let h = Harness::new().await;
    let c = h.serve("/open", 38, LEN);
    let ranges = [range(100, Some(50)), range(390_000, None)];
    let want = concat(&c.bytes, &ranges);
    assert_eq!(want.len(), 10_050);
    let req = ranged_request(&h, "/open", &ranges);
    let out = h.run(&req).await;
    assert_eq!(out.done().bytes, 10_050);
    assert_eq!(read(&req.temp_path), want);
    // Unknown until the server declared its size, then the concatenated size.
    let totals = checkpoint_totals(&out.events);
    assert_eq!(totals.last(), Some(&Some(10_050)));
    let log = h.server.requests_for("/open");
    assert_eq!(log[1].range.as_deref(), Some("bytes=390000-"));
    assert_eq!(log[1].status, 206);
}

#[tokio::test]
async fn open_ended_range_given_first_resumes_past_it() {
    let h = Harness::new().await;
    let c = h.serve("/open2", 39, LEN);
    // The open range comes first in the output; its length is known only from the total.
    let ranges = [range(395_000, None), range(0, Some(1000))];
    let want = concat(&c.bytes, &ranges);
    let mut req = ranged_request(&h, "/open2", &ranges);
    std::fs::write(&req.temp_path, &want[..5_500]).unwrap();
    req.offset = 5_500;
    req.validator = Some(Validator::ETag(h.server.etag("/open2").unwrap()));
    req.expected_total = Some(6_000);
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), want);
    assert!(!out.restarted());
    let log = h.server.requests_for("/open2");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].range.as_deref(), Some("bytes=500-999"));
}

#[tokio::test]
async fn complete_open_range_is_confirmed_by_416() {
    let h = Harness::new().await;
    let c = h.serve("/full", 40, LEN);
    let ranges = [range(0, Some(100)), range(300_000, None)];
    let want = concat(&c.bytes, &ranges);
    let mut req = ranged_request(&h, "/full", &ranges);
    std::fs::write(&req.temp_path, &want).unwrap();
    req.offset = want.len() as u64;
    req.validator = Some(Validator::ETag(h.server.etag("/full").unwrap()));
    req.sha256 = Some(sha256_hex(&want));
    let out = h.run(&req).await;
    assert_eq!(out.done().bytes, want.len() as u64);
    let log = h.server.requests_for("/full");
    assert_eq!(
        (log[0].range.as_deref(), log[0].status),
        (Some("bytes=400000-"), 416)
    );
}

#[tokio::test]
async fn file_url_ranges_are_read_from_the_local_file() {
    let h = Harness::new().await;
    let c = TestContent::new(41, 300_000);
    let src = h.dir.path().join("source.bin");
    std::fs::write(&src, &c.bytes).unwrap();
    let url = format!("file://{}", src.display());
    let ranges = [range(250_000, None), range(1, Some(99_999))];
    let want = concat(&c.bytes, &ranges);

    let mut req = h.request_url(url.clone());
    req.ranges = Some(ranges.to_vec());
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256, Some(sha256_hex(&want)));
    assert_eq!(read(&req.temp_path), want);
    let validator = out.done().validator.clone();

    // Resume in the second range.
    let mut req = h.request_url(url.clone());
    req.ranges = Some(ranges.to_vec());
    std::fs::write(&req.temp_path, &want[..70_000]).unwrap();
    req.offset = 70_000;
    req.validator = validator;
    req.expected_total = Some(want.len() as u64);
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), want);
    assert!(!out.restarted());

    // Past the end of the local file.
    let mut req = h.request_url(url);
    req.ranges = Some(vec![range(299_999, Some(2))]);
    let out = h.run(&req).await;
    assert_eq!(out.err().kind, FetchErrorKind::InvalidRange);
    assert_eq!(out.err().context, ErrorContext::RemoteFile);
}

#[tokio::test]
async fn invalid_range_lists_are_refused_before_any_request() {
    let h = Harness::new().await;
    h.serve("/bad", 42, 1000);
    for ranges in [
        vec![],
        vec![range(0, Some(0))],
        vec![range(0, Some(10)), range(5, Some(10))],
    ] {
        let req = ranged_request(&h, "/bad", &ranges);
        let out = h.run(&req).await;
        assert_eq!(out.err().kind, FetchErrorKind::InvalidRequest, "{ranges:?}");
    }
    assert!(h.server.requests_for("/bad").is_empty());
}
