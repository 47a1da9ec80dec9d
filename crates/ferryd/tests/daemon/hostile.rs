//! Hostile servers: one test per fault the test server can inject, each
//! checking the job's final state, its error info, and that no wrong byte ever reaches the
//! destination: a failed file is never handed over by `job.complete`, a recovered one is
//! byte-identical, and no staging file outlives `complete` or `cancel`.
//!
//! The table of scenarios, with what must hold and how to rerun each, is `docs/RELIABILITY.md`.
//! https→http redirects need TLS, which the test server does not speak; they are covered in
//! `ferry-fetch` (`http::tests::https_to_http_redirects_are_refused_unless_allowed`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_client::Client;
use ferry_proto::params::SetParams;
use ferry_proto::{ErrorContext, ErrorInfo, FileRange, Job, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::daemon::{TestDaemon, wait_for};
use ferry_testkit::http::{Behavior, TestServer};

use crate::support::*;

/// A short no-progress timeout, for the scenarios that must end in `NO_PROGRESS_TIMEOUT`.
const SHORT_NPT_S: u64 = 2;

/// Loose memory bound for the daemon under a hostile server.
const MAX_RSS_KIB: u64 = 200 * 1024;

/// The error info of a job in `state`, checked to be the same through `job.get` and
/// `job.get_error`, and to name file 0 (every job here has one file) unless it is about the
/// whole job (`MAX_DOWNLOAD_TIME`).
async fn error_in(c: &Client, id: &str, state: JobState) -> (Job, ErrorInfo) {
    let job = wait_state(c, id, state).await;
    let err = job
        .error
        .clone()
        .expect("a job in an error state has error info");
    eprintln!("{state:?}: {err:?}");
    let same = c.get_error(id).await.unwrap();
    if state == JobState::Error {
        assert_eq!(same.as_ref(), Some(&err));
    }
    let file_index = (err.code != "MAX_DOWNLOAD_TIME").then_some(0);
    assert_eq!(err.file_index, file_index, "{err:?}");
    (job, err)
}

/// The job failed for good: `job.complete` drops its file (`partial`), nothing appears at the
/// destination, and no staging file is left in its directory (one directory per job).
async fn failed_file_is_not_delivered(c: &Client, id: &str, dest: &Path) {
    let r = c.complete(id).await.unwrap();
    assert_eq!(r.state, JobState::Acknowledged);
    assert!(r.partial, "a failed file must not count as delivered");
    assert!(!dest.exists(), "{} must not exist", dest.display());
    let dir = dest.parent().unwrap();
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

/// The job transferred: `job.complete` delivers exactly `content`, and no staging file is left
/// in its directory (one directory per job).
async fn delivered_exactly(c: &Client, id: &str, dest: &Path, content: &TestContent) {
    let r = c.complete(id).await.unwrap();
    assert_eq!(r.state, JobState::Acknowledged);
    assert!(!r.partial);
    assert_eq!(std::fs::metadata(dest).unwrap().len(), content.len() as u64);
    assert_eq!(sha256_file(dest), content.sha256);
    let dir = dest.parent().unwrap();
    assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
}

/// `files/<name>/<name>` in the daemon's temp dir: one directory per job, so that checking for
/// staging files left behind by one job does not see another job's.
fn dest_in(d: &TestDaemon, name: &str) -> PathBuf {
    let dir = d.files_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `VmRSS` of a process, in KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// The daemon still answers a new client, and its resident memory is below [`MAX_RSS_KIB`].
async fn responsive_and_bounded(d: &TestDaemon) {
    let hello = tokio::time::timeout(Duration::from_secs(5), async {
        d.client().await.hello().await
    })
    .await
    .expect("ferry.hello answered within 5 s")
    .unwrap();
    assert_eq!(hello.protocol, 1);
    let rss = vm_rss_kib(d.pid());
    eprintln!("ferryd VmRSS: {rss} KiB");
    assert!(rss < MAX_RSS_KIB, "ferryd uses {rss} KiB");
}

/// Sets the job's `max_download_time_s`.
async fn max_download_time(c: &Client, id: &str, secs: u64) {
    c.set(SetParams {
        job_id: id.into(),
        max_download_time_s: Some(Some(secs)),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A connection reset (TCP RST) mid-body is a transient `CONNECTION_RESET`; the retry resumes
/// with `Range`/`If-Range` from the durable prefix, and the result is byte-identical.
#[tokio::test]
async fn reset_mid_body() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(501, 300_000);
    srv.add_file("/f", content.bytes.clone());
    srv.set_behavior(
        "/f",
        Behavior {
            rate_bytes_per_sec: Some(400_000),
            reset_after: Some(100_000),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "f");
    let id = job_with(&c, vec![spec(&srv.url("/f"), &dest)]).await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let (job, err) = error_in(&c, &id, JobState::TransientError).await;
    srv.clear_behavior("/f");
    assert_eq!(err.code, "CONNECTION_RESET");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(err.transient);
    assert!(
        err.description.contains("broke mid-transfer") && err.description.contains("reset"),
        "{}",
        err.description
    );
    assert_eq!(err.protocol.as_deref(), Some("http"));
    assert!(!dest.exists());
    let kept = job.progress.bytes_transferred;
    assert!(kept > 0 && kept <= 100_000, "{kept}");

    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert!(job.error.is_none());
    assert_eq!(job.error_count, 1);
    let reqs = srv.requests_for("/f");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].range.as_deref(), Some(&*format!("bytes={kept}-")));
    assert_eq!(reqs[1].if_range, srv.etag("/f"));
    assert_eq!(reqs[1].status, 206);
    delivered_exactly(&c, &id, &dest, &content).await;
}

/// A body shorter than its `Content-Length` (the server closes early, every time) is never
/// taken for the whole file: each attempt is a transient `CONNECTION_RESET`, each retry
/// resumes where the last one ended, and the file completes byte-identical.
#[tokio::test]
async fn body_shorter_than_content_length() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(502, 100_000);
    srv.add_file("/short", content.bytes.clone());
    // Every answer, ranged or not, stops after 40 000 bytes of its body.
    srv.set_behavior(
        "/short",
        Behavior {
            cut_after: Some(40_000),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "short");
    let id = job_with(&c, vec![spec(&srv.url("/short"), &dest)]).await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let (job, err) = error_in(&c, &id, JobState::TransientError).await;
    assert_eq!(err.code, "CONNECTION_RESET");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(err.transient);
    assert!(
        err.description.contains("broke mid-transfer")
            && err
                .description
                .contains("end of file before message length reached"),
        "{}",
        err.description
    );
    assert_eq!(job.progress.bytes_transferred, 40_000);
    assert!(!dest.exists());

    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(job.error_count, 2);
    let ranges: Vec<_> = srv
        .requests_for("/short")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=40000-".to_owned()),
            Some("bytes=80000-".to_owned())
        ]
    );
    delivered_exactly(&c, &id, &dest, &content).await;
}

/// A body longer than its `Content-Length`: the client takes exactly the declared bytes and the
/// surplus never reaches a file. The surplus is read as the head of whatever comes next on that
/// connection: usually hyper sees it while the connection is idle and drops it; if the next
/// file's request already went out on it, that answer is a transient `MALFORMED_RESPONSE` and
/// the retry (on a new connection) delivers it.
#[tokio::test]
async fn body_longer_than_content_length() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let long = TestContent::new(503, 50_000);
    let next = TestContent::new(504, 50_000);
    srv.add_file("/long", long.bytes.clone());
    srv.add_file("/next", next.bytes.clone());
    srv.set_behavior(
        "/long",
        Behavior {
            extra_body_bytes: Some(64 * 1024),
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![
            spec(&srv.url("/long"), &dir.join("long")),
            spec(&srv.url("/next"), &dir.join("next")),
        ],
    )
    .await;
    fast_retry(&c, &id, None).await;
    // One file after the other, so the second would reuse the first one's connection.
    c.set(SetParams {
        job_id: id.clone(),
        max_parallel_files: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert!(job.error.is_none());
    assert_eq!(job.progress.bytes_transferred, 100_000);
    let sent = srv.requests_for("/long");
    assert_eq!(sent.len(), 1, "the first file was taken at once");
    assert!(sent[0].body_bytes_sent > 50_000, "the surplus went out");
    let asked = srv.requests_for("/next");
    // Never on the connection that carried the surplus, except for an answer that failed.
    let mut errors = Vec::new();
    let events = c
        .read_events(ferry_proto::params::EventsReadParams {
            job_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    for e in events.events {
        if let ferry_proto::EventKind::Error { error } = e.kind {
            errors.push(error);
        }
    }
    assert_eq!(errors.len() as u64, job.error_count);
    match errors.as_slice() {
        [] => {
            assert_eq!(asked.len(), 1);
            assert_ne!(asked[0].connection_id, sent[0].connection_id);
        }
        [err] => {
            assert_eq!(err.code, "MALFORMED_RESPONSE");
            assert_eq!(err.file_index, Some(1));
            assert!(err.transient);
            assert_eq!(asked.len(), 2);
            assert_eq!(asked[0].connection_id, sent[0].connection_id);
            assert_ne!(asked[1].connection_id, sent[0].connection_id);
        }
        more => panic!("{more:?}"),
    }
    let r = c.complete(&id).await.unwrap();
    assert!(!r.partial);
    for (name, content) in [("long", &long), ("next", &next)] {
        let path = dir.join(name);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 50_000, "{name}");
        assert_eq!(sha256_file(&path), content.sha256, "{name}");
    }
    assert!(temp_files(&dir).is_empty());
}

/// A 200 with an HTML error page in answer to a range request. For a plain file resuming with
/// `If-Range`, a 200 is a new version of the whole file: the fetched prefix is dropped (never
/// spliced with the page) and the page is checked as the whole file — with a `sha256` it fails
/// `SHA256_MISMATCH`. For a ranged file (`AddFileWithRanges`), a 200 is never written:
/// `RANGE_UNSUPPORTED`.
#[tokio::test]
async fn html_error_page_to_range_request() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let page: &'static [u8] = b"<!DOCTYPE html><html><head><title>Error</title></head>\
        <body><h1>Service temporarily unavailable</h1></body></html>\n";
    let content = TestContent::new(505, 200_000);
    srv.add_file("/plain", content.bytes.clone());
    srv.add_file("/ranged", content.bytes.clone());
    srv.set_behavior(
        "/plain",
        Behavior {
            cut_after: Some(50_000),
            ..Behavior::default()
        },
    );
    srv.set_behavior(
        "/ranged",
        Behavior {
            body_override: Some(page.into()),
            ..Behavior::default()
        },
    );
    let plain = dest_in(&d, "plain");
    let mut plain_spec = spec(&srv.url("/plain"), &plain);
    plain_spec.sha256 = Some(content.sha256.clone());
    let plain_id = job_with(&c, vec![plain_spec]).await;
    let ranged = dest_in(&d, "ranged");
    let mut ranged_spec = spec(&srv.url("/ranged"), &ranged);
    ranged_spec.ranges = Some(vec![FileRange {
        offset: 1000,
        length: Some(5000),
    }]);
    let ranged_id = job_with(&c, vec![ranged_spec]).await;

    // The ranged file: its very first request carries a range.
    c.resume(&ranged_id).await.unwrap();
    let (_, err) = error_in(&c, &ranged_id, JobState::Error).await;
    assert_eq!(err.code, "RANGE_UNSUPPORTED");
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert!(
        err.description
            .contains("bytes 1000-5999 with the whole file"),
        "{}",
        err.description
    );
    let asked = srv.requests_for("/ranged");
    assert_eq!(asked[0].range.as_deref(), Some("bytes=1000-5999"));
    assert_eq!(asked[0].status, 200);
    assert_eq!(c.files(&ranged_id).await.unwrap()[0].bytes_transferred, 0);
    failed_file_is_not_delivered(&c, &ranged_id, &ranged).await;

    // The plain file: cut once, so the retry resumes with Range and If-Range.
    fast_retry(&c, &plain_id, None).await;
    c.resume(&plain_id).await.unwrap();
    let (job, _) = error_in(&c, &plain_id, JobState::TransientError).await;
    assert_eq!(job.progress.bytes_transferred, 50_000);
    srv.set_behavior(
        "/plain",
        Behavior {
            body_override: Some(page.into()),
            ..Behavior::default()
        },
    );
    let (_, err) = error_in(&c, &plain_id, JobState::Error).await;
    assert_eq!(err.code, "SHA256_MISMATCH");
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    let page_sha = ferry_testkit::content::sha256_hex(page);
    assert!(
        err.description.contains(&page_sha) && err.description.contains(&content.sha256),
        "{}",
        err.description
    );
    let asked = srv.requests_for("/plain");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1].range.as_deref(), Some("bytes=50000-"));
    assert_eq!(asked[1].if_range, srv.etag("/plain"));
    assert_eq!(asked[1].status, 200);
    assert!(!plain.exists());
    failed_file_is_not_delivered(&c, &plain_id, &plain).await;
}

/// A 206 whose `Content-Range` is not what was asked for (another start with the right length,
/// or a length that disagrees with `Content-Length`) is a fatal `INVALID_SERVER_RESPONSE`; not
/// one byte of it is written after the prefix already fetched. One failed job is completed,
/// the other cancelled: neither leaves a file or a staging file.
#[tokio::test]
async fn content_range_mismatch() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(506, 200_000);
    // Both resume at 50 000 and ask for bytes=50000-, 150 000 bytes.
    let lies = [
        ("/start", "bytes 40000-189999/200000", "40000-189999"),
        (
            "/length",
            "bytes 50000-59999/200000",
            "does not match Content-Range",
        ),
    ];
    // One after the other: the lie must be in place before the 1 s retry.
    for (path, lie, named) in lies {
        srv.add_file(path, content.bytes.clone());
        srv.set_behavior(
            path,
            Behavior {
                cut_after: Some(50_000),
                ..Behavior::default()
            },
        );
        let dest = dest_in(&d, &path[1..]);
        let id = &job_with(&c, vec![spec(&srv.url(path), &dest)]).await;
        fast_retry(&c, id, None).await;
        c.resume(id).await.unwrap();
        let (job, _) = error_in(&c, id, JobState::TransientError).await;
        assert_eq!(job.progress.bytes_transferred, 50_000);
        srv.set_behavior(
            path,
            Behavior {
                content_range_override: Some(lie.to_owned()),
                ..Behavior::default()
            },
        );
        let (job, err) = error_in(&c, id, JobState::Error).await;
        assert_eq!(err.code, "INVALID_SERVER_RESPONSE", "{path}");
        assert_eq!(err.context, ErrorContext::RemoteFile);
        assert!(!err.transient);
        assert!(err.description.contains(named), "{}", err.description);
        let asked = srv.requests_for(path);
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[1].range.as_deref(), Some("bytes=50000-"));
        assert_eq!(asked[1].status, 206);
        // The sound prefix stays; nothing of the lying answer was appended.
        assert_eq!(job.progress.bytes_transferred, 50_000);
        assert_eq!(c.files(id).await.unwrap()[0].bytes_transferred, 50_000);
        if path == "/start" {
            failed_file_is_not_delivered(&c, id, &dest).await;
        } else {
            // The other way out of a failed job: cancel leaves nothing either.
            assert_eq!(c.cancel(id).await.unwrap().state, JobState::Cancelled);
            assert!(!dest.exists());
            let dir = dest.parent().unwrap();
            assert!(temp_files(dir).is_empty(), "{:?}", temp_files(dir));
        }
    }
}

/// A server whose ETag changes on every request: a resume's `If-Range` never matches, so the
/// server sends the whole file (200) and Ferry starts over from zero instead of splicing two
/// versions; the file completes byte-identical.
#[tokio::test]
async fn etag_changes_every_request() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(507, 200_000);
    srv.add_file("/e", content.bytes.clone());
    srv.set_behavior(
        "/e",
        Behavior {
            etag_changes_every_request: true,
            cut_after: Some(60_000),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "e");
    let id = job_with(&c, vec![spec(&srv.url("/e"), &dest)]).await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let (job, err) = error_in(&c, &id, JobState::TransientError).await;
    assert_eq!(err.code, "CONNECTION_RESET");
    assert_eq!(job.progress.bytes_transferred, 60_000);
    srv.set_behavior(
        "/e",
        Behavior {
            etag_changes_every_request: true,
            ..Behavior::default()
        },
    );
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert!(job.error.is_none());
    assert_eq!(job.error_count, 1);
    let asked = srv.requests_for("/e");
    assert_eq!(asked.len(), 2);
    assert_eq!(asked[1].range.as_deref(), Some("bytes=60000-"));
    let first_etag = asked[1].if_range.clone().expect("the resume sent If-Range");
    assert_ne!(Some(first_etag), srv.etag("/e"), "the ETag changed");
    assert_eq!((asked[1].status, asked[1].body_bytes_sent), (200, 200_000));
    delivered_exactly(&c, &id, &dest, &content).await;
}

/// A redirect loop is a fatal `REDIRECT_REFUSED` at once: no retry, nothing delivered.
#[tokio::test]
async fn redirect_loop() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    for (from, to) in [("/a", "/b"), ("/b", "/c"), ("/c", "/a")] {
        srv.set_behavior(
            from,
            Behavior {
                redirect_to: Some(to.into()),
                ..Behavior::default()
            },
        );
    }
    let dest = dest_in(&d, "loop");
    let id = job_with(&c, vec![spec(&srv.url("/a"), &dest)]).await;
    fast_retry(&c, &id, None).await;
    c.resume(&id).await.unwrap();
    let (job, err) = error_in(&c, &id, JobState::Error).await;
    assert_eq!(err.code, "REDIRECT_REFUSED");
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert!(
        err.description.contains("redirect loop"),
        "{}",
        err.description
    );
    assert_eq!(job.error_count, 1);
    assert_eq!(srv.requests().len(), 3, "each hop asked once, no retry");
    failed_file_is_not_delivered(&c, &id, &dest).await;
}

/// A redirect to a `file:` URL is never followed (it would read the daemon's own files): a
/// fatal `REDIRECT_REFUSED`, and the local file's bytes reach no destination.
#[tokio::test]
async fn redirect_to_file_url() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let secret = d.dir.path().join("secret");
    std::fs::write(&secret, b"local bytes a server must never make us copy").unwrap();
    srv.set_behavior(
        "/r",
        Behavior {
            redirect_to: Some(format!("file://{}", secret.display())),
            status: Some(301),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "r");
    let id = job_with(&c, vec![spec(&srv.url("/r"), &dest)]).await;
    c.resume(&id).await.unwrap();
    let (_, err) = error_in(&c, &id, JobState::Error).await;
    assert_eq!(err.code, "REDIRECT_REFUSED");
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert!(err.description.contains("file: URL"), "{}", err.description);
    assert_eq!(c.files(&id).await.unwrap()[0].bytes_transferred, 0);
    failed_file_is_not_delivered(&c, &id, &dest).await;
}

/// 10 MiB of response headers: the client stops reading at hyper's head limit (a few hundred
/// KiB), so memory stays bounded; the attempt is a transient `MALFORMED_RESPONSE` naming the
/// oversized head (a malformed response is retried, as in BITS), and with the same answer every
/// time the job ends in `NO_PROGRESS_TIMEOUT`. The daemon stays responsive throughout.
#[tokio::test]
async fn ten_mib_of_headers() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/h", TestContent::new(508, 10_000).bytes);
    srv.set_behavior(
        "/h",
        Behavior {
            huge_headers: Some(10 * 1024 * 1024),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "h");
    let id = job_with(&c, vec![spec(&srv.url("/h"), &dest)]).await;
    fast_retry(&c, &id, Some(SHORT_NPT_S)).await;
    c.resume(&id).await.unwrap();
    let (job, err) = error_in(&c, &id, JobState::TransientError).await;
    assert_eq!(err.code, "MALFORMED_RESPONSE");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(err.transient);
    assert!(
        err.description.contains("not valid HTTP: ")
            && err.description.contains("message head is too large"),
        "{}",
        err.description
    );
    assert_eq!(job.progress.bytes_transferred, 0);
    responsive_and_bounded(&d).await;

    let (_, err) = error_in(&c, &id, JobState::Error).await;
    assert_eq!(err.code, "NO_PROGRESS_TIMEOUT");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(!err.transient);
    assert!(
        err.description.contains("message head is too large"),
        "{}",
        err.description
    );
    // The daemon hung up on every oversized head: the server's writes ended.
    let log = srv
        .wait_until(WAIT, |l| l.iter().all(|r| r.finished))
        .await
        .expect("the daemon closed the connections");
    assert!(log.len() >= 2, "retried after the transient error");
    assert!(log.iter().all(|r| r.body_bytes_sent == 0));
    responsive_and_bounded(&d).await;
    failed_file_is_not_delivered(&c, &id, &dest).await;
}

/// An endless body (no `Content-Length`, never closed): the transfer makes progress without
/// end, so only `max_download_time_s` stops it (`MAX_DOWNLOAD_TIME`); memory stays bounded
/// meanwhile, the daemon keeps answering, and nothing of the stream is delivered.
#[tokio::test]
async fn endless_body() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/endless", TestContent::new(509, 100_000).bytes);
    srv.set_behavior(
        "/endless",
        Behavior {
            endless_body: true,
            rate_bytes_per_sec: Some(2_000_000),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "endless");
    let id = job_with(&c, vec![spec(&srv.url("/endless"), &dest)]).await;
    max_download_time(&c, &id, 3).await;
    c.resume(&id).await.unwrap();
    wait_for(&c, &id, WAIT, |j| j.progress.bytes_transferred > 1_000_000).await;
    let job = c.get(&id).await.unwrap();
    assert_eq!(job.state, JobState::Transferring);
    assert_eq!(job.progress.bytes_total, None, "no size was declared");
    responsive_and_bounded(&d).await;

    let (job, err) = error_in(&c, &id, JobState::Error).await;
    assert_eq!(err.code, "MAX_DOWNLOAD_TIME");
    assert_eq!(err.context, ErrorContext::GeneralQueueManager);
    assert!(!err.transient);
    assert!(
        err.description.contains("max_download_time_s"),
        "{}",
        err.description
    );
    // At 2 MB/s for about 3 s.
    assert!(
        job.progress.bytes_transferred < 10_000_000,
        "{}",
        job.progress.bytes_transferred
    );
    // The daemon hung up on the stream.
    srv.wait_until(WAIT, |l| l.iter().all(|r| r.finished))
        .await
        .expect("the daemon closed the endless connection");
    responsive_and_bounded(&d).await;
    failed_file_is_not_delivered(&c, &id, &dest).await;
}

/// 429 and 503 with `Retry-After` are transient; the daemon waits
/// at least as long as asked (longer than the job's 1 s retry delay), says so in `waiting`,
/// then recovers. A `Retry-After` beyond the no-progress timeout fails the job at once with
/// `NO_PROGRESS_TIMEOUT` instead of sleeping past it.
#[tokio::test]
async fn retry_after_429_and_503() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let cases = [("/429", 429, "3"), ("/503", 503, "3")];
    let mut jobs = Vec::new();
    for (i, (path, status, retry_after)) in cases.iter().enumerate() {
        let content = TestContent::new(510 + i as u64, 20_000);
        srv.add_file(path, content.bytes.clone());
        srv.set_behavior(
            path,
            Behavior {
                fail_first: Some((1, *status)),
                retry_after: Some((*retry_after).to_owned()),
                ..Behavior::default()
            },
        );
        let dest = dest_in(&d, &path[1..]);
        let id = job_with(&c, vec![spec(&srv.url(path), &dest)]).await;
        fast_retry(&c, &id, None).await;
        c.resume(&id).await.unwrap();
        jobs.push((id, dest, content));
    }
    // Far beyond the no-progress timeout.
    srv.set_behavior(
        "/never",
        Behavior {
            status: Some(503),
            retry_after: Some("3600".into()),
            ..Behavior::default()
        },
    );
    let never = dest_in(&d, "never");
    let never_id = job_with(&c, vec![spec(&srv.url("/never"), &never)]).await;
    fast_retry(&c, &never_id, Some(30)).await;
    c.resume(&never_id).await.unwrap();

    for ((path, status, _), (id, _, _)) in cases.iter().zip(&jobs) {
        let (job, err) = error_in(&c, id, JobState::TransientError).await;
        assert_eq!(err.code, format!("HTTP_{status}"));
        assert_eq!(err.http_status, Some(*status));
        assert_eq!(err.context, ErrorContext::RemoteFile);
        assert!(err.transient);
        assert!(
            err.description.contains(&status.to_string()),
            "{}",
            err.description
        );
        let waiting = job
            .waiting
            .expect("a transient-error job says why it waits");
        assert_eq!(waiting.reason, "retry_after", "{path}");
        assert!(waiting.until.is_some());
    }
    for ((path, _, _), (id, dest, content)) in cases.iter().zip(&jobs) {
        let job = wait_state(&c, id, JobState::Transferred).await;
        assert!(job.error.is_none());
        let asked = srv.requests_for(path);
        assert_eq!(asked.len(), 2);
        let waited = asked[1].time.duration_since(asked[0].time);
        assert!(
            waited >= Duration::from_millis(2_500),
            "{path}: retried after {waited:?}, before Retry-After"
        );
        delivered_exactly(&c, id, dest, content).await;
    }

    let (_, err) = error_in(&c, &never_id, JobState::Error).await;
    assert_eq!(err.code, "NO_PROGRESS_TIMEOUT");
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert!(err.description.contains("503"), "{}", err.description);
    assert_eq!(srv.requests_for("/never").len(), 1);
    failed_file_is_not_delivered(&c, &never_id, &never).await;
}

/// Headers, then silence: with a stall as long as the no-progress timeout, the job fails with
/// `NO_PROGRESS_TIMEOUT` (no pointless transient round), the daemon hangs up, and a later
/// resume against a healthy server delivers the right file.
#[tokio::test]
async fn stall_after_headers() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(512, 100_000);
    srv.add_file("/stall", content.bytes.clone());
    srv.set_behavior(
        "/stall",
        Behavior {
            stall_after: Some(0),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "stall");
    let id = job_with(&c, vec![spec(&srv.url("/stall"), &dest)]).await;
    fast_retry(&c, &id, Some(SHORT_NPT_S)).await;
    c.resume(&id).await.unwrap();
    let (job, err) = error_in(&c, &id, JobState::Error).await;
    assert_eq!(err.code, "NO_PROGRESS_TIMEOUT");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(!err.transient);
    assert!(
        err.description.contains("no progress for 2 s")
            && err.description.contains("no data arrived"),
        "{}",
        err.description
    );
    assert_eq!(job.progress.bytes_transferred, 0);
    assert_eq!(
        job.error_count, 1,
        "failed at once, without a transient round"
    );
    assert!(!dest.exists());
    srv.wait_until(WAIT, |l| l.iter().all(|r| r.finished))
        .await
        .expect("the daemon hung up on the stalled answer");

    srv.clear_behavior("/stall");
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    delivered_exactly(&c, &id, &dest, &content).await;
}

/// A server that accepts the connection, reads the request and never answers: the same as a
/// stall before the status line — `NO_PROGRESS_TIMEOUT` after the no-progress timeout, the
/// socket is closed by the daemon, and nothing is delivered.
#[tokio::test]
async fn accepts_and_never_answers() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/silent", TestContent::new(513, 10_000).bytes);
    srv.set_behavior(
        "/silent",
        Behavior {
            never_answer: true,
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "silent");
    let id = job_with(&c, vec![spec(&srv.url("/silent"), &dest)]).await;
    fast_retry(&c, &id, Some(SHORT_NPT_S)).await;
    c.resume(&id).await.unwrap();
    srv.wait_for_requests("/silent", 1, WAIT).await;
    let started = std::time::Instant::now();
    let (job, err) = error_in(&c, &id, JobState::Error).await;
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert_eq!(err.code, "NO_PROGRESS_TIMEOUT");
    assert_eq!(err.context, ErrorContext::GeneralTransport);
    assert!(!err.transient);
    assert!(
        err.description.contains("no data arrived"),
        "{}",
        err.description
    );
    assert_eq!(
        job.error_count, 1,
        "failed at once, without a transient round"
    );
    let log = srv
        .wait_until(WAIT, |l| l.iter().all(|r| r.finished))
        .await
        .expect("the daemon hung up");
    assert_eq!((log.len(), log[0].status), (1, 0));
    failed_file_is_not_delivered(&c, &id, &dest).await;
}

/// Known gap, reported rather than fixed here (the fix belongs in ferryd's progress
/// accounting, not in ferry-fetch): a server whose ETag changes on every request *and* cuts
/// every body short. Each attempt starts over from zero (correctly: never splicing versions)
/// and re-fetches the same prefix; those bytes count as progress, so `no_progress_timeout_s`
/// never fires and the job loops until `max_download_time_s`. What should hold: progress
/// means bytes beyond the furthest offset reached, and the job fails `NO_PROGRESS_TIMEOUT`.
#[tokio::test]
async fn etag_changes_and_every_body_is_cut() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/e", TestContent::new(514, 200_000).bytes);
    srv.set_behavior(
        "/e",
        Behavior {
            etag_changes_every_request: true,
            cut_after: Some(60_000),
            // Slow enough that progress is reported while each body arrives.
            rate_bytes_per_sec: Some(200_000),
            ..Behavior::default()
        },
    );
    let dest = dest_in(&d, "e");
    let id = job_with(&c, vec![spec(&srv.url("/e"), &dest)]).await;
    fast_retry(&c, &id, Some(3)).await;
    c.resume(&id).await.unwrap();
    let job =
        ferry_testkit::daemon::wait_state(&c, &id, JobState::Error, Duration::from_secs(20)).await;
    assert_eq!(job.error.unwrap().code, "NO_PROGRESS_TIMEOUT");
    failed_file_is_not_delivered(&c, &id, &dest).await;
}
