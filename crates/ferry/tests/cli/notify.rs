//! The notification verbs: `handler add|list|remove`, `set --notify-flags/--handler/
//! --notify-cmdline`, `validate`, `events`.

use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;

use crate::support::*;

#[tokio::test]
async fn handler_verbs_round_trip() {
    let env = Env::start();
    env.ok(&[
        "handler",
        "add",
        "my-app",
        "--activation-timeout",
        "12",
        "--",
        "/bin/true",
        "--flag",
    ])
    .await;
    let v = env.json(&["handler", "list"]).await;
    let list = v["handlers"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| v.as_array().cloned().unwrap_or_default());
    let h = list.iter().find(|h| h["name"] == "my-app").expect("listed");
    assert_eq!(h["argv"], serde_json::json!(["/bin/true", "--flag"]));
    assert_eq!(h["activation_timeout_s"], 12);
    let text = env.ok(&["handler", "list"]).await;
    assert!(text.stdout.contains("my-app"));
    env.ok(&["handler", "remove", "my-app"]).await;
    let v = env.json(&["handler", "list"]).await;
    assert!(!v.to_string().contains("my-app"));
}

#[tokio::test]
async fn set_notify_fields_and_clear_them() {
    let env = Env::start();
    let id = env.create("notified").await;
    env.ok(&[
        "set",
        &id,
        "--notify-flags",
        "19",
        "--handler",
        "my-app",
        "--notify-cmdline",
        "--",
        "/bin/echo",
        "done",
    ])
    .await;
    let job = env.info(&id).await;
    assert_eq!(job["notify_flags"], 19);
    assert_eq!(job["notify_handler"], "my-app");
    assert_eq!(
        job["notify_cmdline"],
        serde_json::json!(["/bin/echo", "done"])
    );
    env.ok(&["set", &id, "--no-handler", "--no-notify-cmdline"])
        .await;
    let job = env.info(&id).await;
    assert!(job["notify_handler"].is_null() && job["notify_cmdline"].is_null());
    let bad = env.run(&["set", &id, "--notify-flags", "64"]).await;
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("notify_flags"), "{}", bad.stderr);
}

#[tokio::test]
async fn validate_and_events() {
    let env = Env::start();
    let srv = TestServer::start().await;
    srv.add_file("/v", TestContent::new(130, 1000).bytes);
    let dir = env.dir("out");
    let id = env.create("validated").await;
    let dest = dir.join("v");
    env.ok(&["add", &id, &srv.url("/v"), arg(&dest)]).await;
    // Validating before the file arrived is refused as pending.
    let early = env.run(&["validate", &id, "0", "--valid"]).await;
    assert_ne!(early.code, Some(0));
    env.ok(&["resume", &id]).await;
    env.ok(&["wait", &id]).await;
    env.ok(&["validate", &id, "0", "--valid"]).await;
    let files = env.json(&["files", &id]).await;
    assert_eq!(files["files"][0]["validation"], "valid");
    let out = env.ok(&["--json", "events", &id]).await;
    let kinds: Vec<String> = out
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("created"));
    assert!(kinds.iter().any(|k| k == "file_transferred"), "{kinds:?}");
}
