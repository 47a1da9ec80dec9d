//! `ferry upload FILE URL`: the file lands byte-identical on a real BITS upload server
//! (`ferry-upload-server`) and a real tus server, with the plain and `--json` output; a path
//! that is no file is a usage error that creates no job.

use ferry_testkit::upload::{TusServer, UploadServer};

use crate::support::*;

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 10) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_ferry_upload_sends_a_file_to_a_bits_server() {
    let env = Env::start();
    let srv = UploadServer::start();
    let data = payload(1024 * 1024 + 3);
    let src = env.dir("src").join("crash.dmp");
    std::fs::write(&src, &data).unwrap();
    let url = srv.url("crash.dmp");
    let out = env.ok(&["upload", arg(&src), &url]).await;
    assert_eq!(
        out.lines(),
        [format!("uploaded {} to {url}", src.display())],
        "{out:?}"
    );
    assert_eq!(srv.landed("crash.dmp").unwrap(), data);
    assert_eq!(srv.sessions(), 0);
    assert_eq!(
        std::fs::read(&src).unwrap(),
        data,
        "the source is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_ferry_upload_json_to_a_tus_server() {
    let Some(tus) = TusServer::start("issue_14_ferry_upload_json_to_a_tus_server") else {
        return;
    };
    let env = Env::start();
    let data = payload(300_000);
    let src = env.dir("src").join("photo.jpg");
    std::fs::write(&src, &data).unwrap();
    let v = env.json(&["upload", arg(&src), &tus.url(), "--json"]).await;
    assert_eq!(v["state"], "acknowledged", "{v}");
    assert_eq!(v["bytes"], data.len() as u64, "{v}");
    assert_eq!(v["local_path"], arg(&src), "{v}");
    let uploads = tus.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(std::fs::read(&uploads[0]).unwrap(), data);
}

#[tokio::test]
async fn issue_14_ferry_upload_of_a_directory_is_a_usage_error() {
    let env = Env::start();
    let dir = env.dir("d");
    let out = env
        .run(&["upload", arg(&dir), "http://127.0.0.1:9/x"])
        .await;
    out.expect_code(2);
    assert!(out.stderr.contains("is not a file"), "{out:?}");
}
