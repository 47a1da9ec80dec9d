//! Ranged files (BITS `AddFileWithRanges`) end to end: the ranges arrive concatenated in the
//! given order, sizes are known at add time when every range is bounded, invalid range lists
//! are refused with `-32602`, and a server without range support fails the job.

use ferry_proto::{ErrorContext, FileRange, FileSpec, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::{Behavior, TestServer};
use serde_json::json;

use crate::protocol::Raw;
use crate::support::*;

fn range(offset: u64, length: Option<u64>) -> FileRange {
    FileRange { offset, length }
}

fn ranged_spec(url: &str, path: &std::path::Path, ranges: &[FileRange]) -> FileSpec {
    FileSpec {
        ranges: Some(ranges.to_vec()),
        ..spec(url, path)
    }
}

/// The bytes `ranges` of `content` concatenate to.
fn concat(content: &[u8], ranges: &[FileRange]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in ranges {
        let start = r.offset as usize;
        let end = r.length.map_or(content.len(), |l| start + l as usize);
        out.extend_from_slice(&content[start..end]);
    }
    out
}

#[tokio::test]
async fn ranged_job_completes_with_the_concatenated_ranges() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let content = TestContent::new(60, 300_000);
    srv.add_file("/f", content.bytes.clone());
    srv.add_file("/g", content.bytes.clone());
    let dir = d.files_dir();
    // 100 + 100 + 100 bytes, given out of order: a 300-byte file in that order.
    let bounded = [
        range(200_000, Some(100)),
        range(0, Some(100)),
        range(100, Some(100)),
    ];
    let id = job_with(
        &c,
        vec![ranged_spec(&srv.url("/f"), &dir.join("three"), &bounded)],
    )
    .await;
    // Every range is bounded: the size is known before any byte moved.
    let job = c.get(&id).await.unwrap();
    assert_eq!(job.progress.bytes_total, Some(300));
    let files = c.files(&id).await.unwrap();
    assert_eq!(files[0].bytes_total, Some(300));
    assert_eq!(files[0].ranges.as_deref(), Some(&bounded[..]));

    // An open-ended range: its size is unknown until the server tells it.
    let open = [range(299_000, None), range(5, Some(10))];
    c.add_files(
        &id,
        vec![ranged_spec(&srv.url("/g"), &dir.join("open"), &open)],
    )
    .await
    .unwrap();
    assert_eq!(c.get(&id).await.unwrap().progress.bytes_total, None);

    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(job.progress.files_transferred, 2);
    assert_eq!(job.progress.bytes_total, Some(300 + 1010));
    assert_eq!(job.progress.bytes_transferred, 300 + 1010);
    let files = c.files(&id).await.unwrap();
    assert_eq!(files[1].bytes_total, Some(1010));
    c.complete(&id).await.unwrap();
    assert_eq!(
        std::fs::read(dir.join("three")).unwrap(),
        concat(&content.bytes, &bounded)
    );
    assert_eq!(
        std::fs::read(dir.join("open")).unwrap(),
        concat(&content.bytes, &open)
    );
    // Files may transfer in parallel; within a file the ranges go in the given order.
    let asked = |path: &str| -> Vec<String> {
        srv.requests_for(path)
            .iter()
            .filter_map(|r| r.range.clone())
            .collect()
    };
    assert_eq!(
        asked("/f"),
        ["bytes=200000-200099", "bytes=0-99", "bytes=100-199"]
    );
    assert_eq!(asked("/g"), ["bytes=299000-", "bytes=5-14"]);
    assert!(temp_files(&dir).is_empty());
}

#[tokio::test]
async fn ranged_file_url_source() {
    let d = daemon();
    let c = d.client().await;
    let src = d.dir.path().join("source.bin");
    let content = TestContent::new(61, 100_000);
    std::fs::write(&src, &content.bytes).unwrap();
    let dir = d.files_dir();
    let ranges = [range(90_000, None), range(0, Some(1))];
    let url = format!("file://{}", src.display());
    let id = job_with(&c, vec![ranged_spec(&url, &dir.join("copy"), &ranges)]).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    c.complete(&id).await.unwrap();
    assert_eq!(
        std::fs::read(dir.join("copy")).unwrap(),
        concat(&content.bytes, &ranges)
    );
}

#[tokio::test]
async fn invalid_ranges_are_invalid_params() {
    let d = daemon_with(&["--max-ranges-per-file", "3"]);
    let mut raw = Raw::connect(&d.socket).await;
    let dir = d.files_dir();
    let src = d.dir.path().join("source.bin");
    std::fs::write(&src, vec![7u8; 1000]).unwrap();
    let create = |ranges: serde_json::Value, url: &str| {
        json!({"display_name": "x", "files": [
            {"remote_url": "http://h/ok", "local_path": dir.join("ok")},
            {"remote_url": url, "local_path": dir.join("x"), "ranges": ranges},
        ]})
    };
    let http = "http://h/x";
    let file_url = format!("file://{}", src.display());
    for (ranges, url, bits) in [
        (
            json!([{"offset": 0, "length": 100}, {"offset": 50, "length": 10}]),
            http,
            Some("BG_E_OVERLAPPING_RANGES"),
        ),
        // Equal offsets overlap whatever the order; a null length reaches to infinity.
        (
            json!([{"offset": 5, "length": 1}, {"offset": 5, "length": 1}]),
            http,
            Some("BG_E_OVERLAPPING_RANGES"),
        ),
        (
            json!([{"offset": 5000, "length": 1}, {"offset": 10, "length": null}]),
            http,
            Some("BG_E_OVERLAPPING_RANGES"),
        ),
        (json!([{"offset": 0, "length": 0}]), http, None),
        (json!([]), http, None),
        // A file:// source's size is known now.
        (
            json!([{"offset": 0, "length": 10}, {"offset": 990, "length": 11}]),
            file_url.as_str(),
            Some("BG_E_INVALID_RANGE"),
        ),
        (
            json!([{"offset": 1000, "length": null}]),
            file_url.as_str(),
            Some("BG_E_INVALID_RANGE"),
        ),
    ] {
        let e = raw.error("job.create", create(ranges.clone(), url)).await;
        assert_eq!(e["code"], -32602, "{ranges}");
        assert_eq!(e["data"]["field"], "files[1].ranges", "{ranges}");
        assert_eq!(e["data"]["bits"].as_str(), bits, "{ranges}");
        assert!(
            e["message"].as_str().unwrap().contains("range"),
            "{}",
            e["message"]
        );
    }
    // Within the file: accepted.
    let r = raw
        .call(
            "job.create",
            create(
                json!([{"offset": 990, "length": null}, {"offset": 0, "length": 10}]),
                &file_url,
            ),
        )
        .await;
    // More than the limit (and overlapping): the limit is checked first.
    let e = raw
        .error(
            "job.create",
            create(
                json!([{"offset": 0, "length": 1}, {"offset": 0, "length": 1}, {"offset": 0, "length": 1}, {"offset": 0, "length": 1}]),
                http,
            ),
        )
        .await;
    assert_eq!(e["code"], -32003);
    assert_eq!(e["data"]["limit"], "ranges_per_file");
    // Overlapping ranges are refused by job.add_files too.
    let id = r["result"]["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let e = raw
        .error(
            "job.add_files",
            json!({"job_id": id, "files": [{"remote_url": http, "local_path": dir.join("y"),
                "ranges": [{"offset": 10, "length": 10}, {"offset": 0, "length": 11}]}]}),
        )
        .await;
    assert_eq!(e["code"], -32602);
    assert_eq!(e["data"]["field"], "files[0].ranges");
    assert_eq!(e["data"]["bits"], "BG_E_OVERLAPPING_RANGES");
}

#[tokio::test]
async fn server_ignoring_ranges_fails_the_job_with_range_unsupported() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/ign", TestContent::new(62, 50_000).bytes);
    srv.set_behavior(
        "/ign",
        Behavior {
            ignore_range: true,
            ..Behavior::default()
        },
    );
    let dir = d.files_dir();
    let id = job_with(
        &c,
        vec![ranged_spec(
            &srv.url("/ign"),
            &dir.join("ign"),
            &[range(100, Some(100))],
        )],
    )
    .await;
    c.resume(&id).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    let err = job.error.unwrap();
    assert_eq!(err.code, "RANGE_UNSUPPORTED");
    assert_eq!(err.context, ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert_eq!(err.file_index, Some(0));
    assert_eq!(job.progress.bytes_transferred, 0);
    c.cancel(&id).await.unwrap();
    assert!(temp_files(&dir).is_empty());
}
