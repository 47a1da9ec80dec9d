//! `ferry cache` and `ferry peers`: without a config file the cache is off and both verbs say how
//! to turn it on; with one, the static peer is listed and the admin verbs answer; and a download
//! finished with `ferry transfer` is published to the cache, listed, and deleted by its key.

use std::time::{Duration, Instant};

use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use serde_json::Value;

use crate::support::*;

/// What `ferry` says when the daemon runs without the peer cache.
const OFF: &str = "the peer cache is off; enable it in ferryd's config file \
                   ([peer_cache] enabled = true) and restart ferryd";

/// A fleet secret long enough for the daemon (16 bytes at least).
const SECRET: &str = "ferry-cli-test-fleet-secret";

/// How long a finished download may take to show up in `cache.list` (published asynchronously).
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// A config file enabling the cache on a free loopback port, with these static peers.
fn cache_config(peers: &[&str]) -> String {
    let peers = peers
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[peer_cache]\n\
         enabled = true\n\
         listen = \"127.0.0.1:0\"\n\
         peers = [{peers}]\n\
         discovery = \"static\"\n\
         secret = \"{SECRET}\"\n\
         max_size_bytes = 1073741824\n\
         max_age_s = 7776000\n\
         min_file_size = 0\n"
    )
}

/// The entries of `ferry cache list --json`.
async fn entries(env: &Env) -> Vec<Value> {
    let v = env.json(&["cache", "list"]).await;
    v["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries array in {v}"))
        .clone()
}

#[tokio::test]
async fn cache_is_off_without_a_config_file() {
    let env = Env::start();

    let out = env.ok(&["cache", "info"]).await;
    assert!(out.stdout.contains(OFF), "{out:?}");
    let v = env.json(&["cache", "info"]).await;
    assert_eq!(v["enabled"], false, "{v}");

    let out = env.ok(&["peers", "list"]).await;
    assert!(out.stdout.contains(OFF), "{out:?}");
    let v = env.json(&["peers", "list"]).await;
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["peers"], serde_json::json!([]), "{v}");
}

#[tokio::test]
async fn static_peer_and_admin_verbs() {
    let env = Env::start_with_config(&cache_config(&["127.0.0.9:9"]));
    let config = env.config.clone().expect("config path");

    // Nothing listens on the peer: it is known, from the config, and not yet asked.
    let v = env.json(&["peers", "list"]).await;
    assert_eq!(v["enabled"], true, "{v}");
    let peers = v["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{v}");
    assert_eq!(peers[0]["addr"], "127.0.0.9:9", "{v}");
    assert_eq!(peers[0]["source"], "static", "{v}");
    let out = env.ok(&["peers", "list"]).await;
    let lines = out.lines();
    assert!(lines[0].starts_with("ADDR"), "{out:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.9:9") && l.contains("static")),
        "{out:?}"
    );

    let v = env.json(&["cache", "info"]).await;
    assert_eq!(v["enabled"], true, "{v}");
    assert_eq!(v["config_file"], arg(&config), "{v}");
    assert_eq!(v["discovery"], "static", "{v}");
    assert_eq!(v["entries"], 0, "{v}");
    assert_eq!(v["max_size_bytes"], 1_073_741_824_u64, "{v}");
    let out = env.ok(&["cache", "info"]).await;
    assert!(
        out.lines()
            .iter()
            .any(|l| l.starts_with("enabled:") && l.ends_with("yes")),
        "{out:?}"
    );
    assert!(!out.stdout.contains(OFF), "{out:?}");

    assert!(entries(&env).await.is_empty());
    let out = env.ok(&["cache", "list"]).await;
    assert_eq!(
        out.lines(),
        ["KEY  SIZE  LAST USED  SERVED  URL"],
        "{out:?}"
    );

    let out = env.ok(&["cache", "clear"]).await;
    assert_eq!(out.stdout.trim(), "deleted 0 entries (0 B)", "{out:?}");
    let v = env.json(&["cache", "clear"]).await;
    assert_eq!(v["deleted"], 0, "{v}");

    // Deleting what is not there is not an error.
    let missing = "f".repeat(64);
    let out = env.ok(&["cache", "delete", &missing]).await;
    assert!(out.stdout.contains("no cache entry matched"), "{out:?}");
    let out = env.ok(&["cache", "delete", "abcdef"]).await;
    assert!(out.stdout.contains("no cache entry matched"), "{out:?}");
    let out = env
        .ok(&["cache", "delete", "--url", "http://127.0.0.1:9/none"])
        .await;
    assert!(out.stdout.contains("no cache entry matched"), "{out:?}");

    // Exactly one of KEY and --url.
    let out = env.run(&["cache", "delete"]).await;
    out.expect_code(2);
    assert!(out.stdout.is_empty(), "{out:?}");
    let out = env
        .run(&["cache", "delete", &missing, "--url", "http://h/x"])
        .await;
    out.expect_code(2);
    assert!(out.stdout.is_empty(), "{out:?}");
    // A KEY that is not hex (a URL without --url) is a usage error too.
    env.run(&["cache", "delete", "http://h/x"])
        .await
        .expect_code(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_download_is_published_then_deleted() {
    let env = Env::start_with_config(&cache_config(&[]));
    let srv = TestServer::start().await;
    let len = 64 * 1024;
    let content = TestContent::new(61, len);
    srv.add_file("/pkg/cached.bin", content.bytes.clone());
    let url = srv.url("/pkg/cached.bin");
    let dest = env.dir("dest");
    let saved = dest.join("cached.bin");

    let out = env.ok(&["transfer", &url, arg(&dest)]).await;
    assert_eq!(
        out.lines(),
        [format!("saved {}", saved.display())],
        "{out:?}"
    );
    assert_eq!(sha256_file(&saved), content.sha256);

    // Publication follows `complete` asynchronously and the CLI has no event for it: poll.
    let start = Instant::now();
    let entry = loop {
        let list = entries(&env).await;
        if let [e] = list.as_slice()
            && e["url"] == url.as_str()
        {
            break e.clone();
        }
        assert!(
            start.elapsed() < PUBLISH_DEADLINE,
            "no cache entry for {url} within {PUBLISH_DEADLINE:?}; `ferry cache list` has {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry["size"], len as u64, "{entry}");
    assert_eq!(entry["sha256"], content.sha256.as_str(), "{entry}");
    assert_eq!(entry["times_served"], 0, "{entry}");
    let key = entry["key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 64, "{entry}");

    let v = env.json(&["cache", "info"]).await;
    assert_eq!(v["entries"], 1, "{v}");
    assert_eq!(v["used_bytes"], len as u64, "{v}");
    let out = env.ok(&["cache", "list"]).await;
    let row = out.lines()[1..]
        .iter()
        .find(|l| l.starts_with(&key[..12]))
        .map(|l| l.to_string())
        .unwrap_or_else(|| panic!("no row for key {key}: {out:?}"));
    assert!(row.contains("64.00 KiB") && row.ends_with(&url), "{out:?}");

    let out = env.ok(&["cache", "delete", &key]).await;
    assert_eq!(out.stdout.trim(), "deleted 1 entry (64.00 KiB)", "{out:?}");
    assert!(entries(&env).await.is_empty());
    let v = env.json(&["cache", "info"]).await;
    assert_eq!(v["entries"], 0, "{v}");
    assert_eq!(v["used_bytes"], 0, "{v}");
    // The cache's copy is gone; the user's file is not.
    assert_eq!(sha256_file(&saved), content.sha256);
    let out = env.ok(&["cache", "delete", "--url", &url]).await;
    assert!(out.stdout.contains("no cache entry matched"), "{out:?}");
}
