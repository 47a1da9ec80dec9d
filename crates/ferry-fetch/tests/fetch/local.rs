//! `file://` sources: copy, resume, restart on change, missing files.

use ferry_fetch::{FetchErrorKind, FetchEvent, Validator};
use ferry_testkit::content::TestContent;

use crate::support::{Harness, read};

fn file_url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

#[tokio::test]
async fn copies_a_local_file() {
    let h = Harness::new().await;
    let c = TestContent::new(50, 2 * 1024 * 1024 + 3);
    let src = h.dir.path().join("source.bin");
    std::fs::write(&src, &c.bytes).unwrap();
    let mut req = h.request_url(file_url(&src));
    req.sha256 = Some(c.sha256.clone());
    let out = h.run(&req).await;
    let done = out.done();
    assert_eq!(done.sha256.as_deref(), Some(c.sha256.as_str()));
    assert_eq!(read(&req.temp_path), c.bytes);
    assert!(
        matches!(&done.validator, Some(Validator::LastModified(v)) if v.ends_with(&format!(":{}", c.len())))
    );
    assert!(
        matches!(out.last_checkpoint(), FetchEvent::Checkpoint { offset, .. } if offset == c.len() as u64)
    );
}

#[tokio::test]
async fn resumes_while_unchanged_and_restarts_when_changed() {
    let h = Harness::new().await;
    let c = TestContent::new(51, 500_000);
    let src = h.dir.path().join("source.bin");
    std::fs::write(&src, &c.bytes).unwrap();
    let validator = h
        .run(&h.request_url(file_url(&src)))
        .await
        .done()
        .validator
        .clone();

    // Unchanged source: appended from the offset, no restart.
    let mut req = h.request_url(file_url(&src));
    std::fs::write(&req.temp_path, &c.bytes[..200_000]).unwrap();
    req.offset = 200_000;
    req.validator = validator.clone();
    let out = h.run(&req).await;
    assert_eq!(out.done().sha256.as_deref(), Some(c.sha256.as_str()));
    assert!(!out.restarted());

    // Changed source (new size, so the validator differs): restart from zero.
    let c2 = TestContent::new(52, 600_000);
    std::fs::write(&src, &c2.bytes).unwrap();
    let mut req = h.request_url(file_url(&src));
    std::fs::write(&req.temp_path, &c.bytes[..200_000]).unwrap();
    req.offset = 200_000;
    req.validator = validator;
    let out = h.run(&req).await;
    assert_eq!(read(&req.temp_path), c2.bytes);
    assert_eq!(out.checkpoints()[0], (0, true));
}

#[tokio::test]
async fn missing_source_is_fatal_file_not_found() {
    let h = Harness::new().await;
    let out = h
        .run(&h.request_url(file_url(&h.dir.path().join("absent"))))
        .await;
    let err = out.err();
    assert_eq!(err.kind, FetchErrorKind::FileNotFound);
    assert_eq!(err.context, ferry_proto::ErrorContext::RemoteFile);
    assert!(!err.transient);
    assert_eq!(err.protocol.as_deref(), Some("file"));
}

#[tokio::test]
async fn a_directory_is_not_a_source() {
    let h = Harness::new().await;
    let out = h.run(&h.request_url(file_url(h.dir.path()))).await;
    assert_eq!(out.err().kind, FetchErrorKind::FileNotFound);
}
