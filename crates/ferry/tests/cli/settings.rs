//! `ferry set` reaches every job property (and `ferry info` shows each); credentials come from
//! a file, stdin or a prompt, never from the command line.

use std::process::Stdio;

use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use tokio::io::AsyncWriteExt as _;

use crate::support::*;

/// The `info` line `key: value` of `out`.
fn info_line<'a>(out: &'a Output, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    out.lines()
        .into_iter()
        .find(|l| l.starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim())
        .unwrap_or_else(|| panic!("no {key:?} line: {out:?}"))
}

/// A suspended job with one file of `srv`, and where it goes.
async fn job_with_file(env: &Env, srv: &TestServer, name: &str) -> String {
    let content = TestContent::new(3, 4096);
    srv.add_file("/secret.bin", content.bytes.clone());
    let id = env.create(name).await;
    let dest = env.dir("dest");
    env.ok(&["add", &id, &srv.url("/secret.bin"), arg(&dest)])
        .await;
    id
}

#[tokio::test]
async fn issue_13_set_credentials_from_file_never_in_argv() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let id = job_with_file(&env, &srv, "creds").await;
    let file = env.root().join("creds.txt");
    std::fs::write(&file, "alice:s3cret:pw\n").expect("write the credentials file");
    let args = ["set", id.as_str(), "--credentials-file", arg(&file)];
    assert!(!args.iter().any(|a| a.contains("s3cret")));
    let out = env.ok(&args).await;
    assert_eq!(info_line(&out, "credentials"), "set", "{out:?}");
    assert!(
        !out.stdout.contains("s3cret") && !out.stderr.contains("s3cret"),
        "{out:?}"
    );
    let info = env.info(&id).await;
    assert_eq!(info["credentials_set"], true, "{info}");
    assert!(!info.to_string().contains("s3cret"), "{info}");
    // The daemon sends them: the password may hold a colon, only the first one separates.
    env.ok(&["resume", &id]).await;
    env.ok(&["wait", &id]).await;
    let sent = srv.requests_for("/secret.bin");
    assert!(!sent.is_empty());
    for r in &sent {
        assert_eq!(
            r.header("authorization"),
            Some("Basic YWxpY2U6czNjcmV0OnB3"),
            "{:?}",
            r.headers
        );
    }
    // --no-credentials removes them; info says so without showing anything else.
    let out = env.ok(&["set", &id, "--no-credentials"]).await;
    assert_eq!(info_line(&out, "credentials"), "unset", "{out:?}");
    assert_eq!(env.info(&id).await["credentials_set"], false);
}

#[tokio::test]
async fn issue_13_set_user_reads_the_password_from_stdin() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let id = job_with_file(&env, &srv, "stdin-creds").await;
    let mut cmd = env.cmd(&["set", &id, "--user", "bob"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("run ferry");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"from-stdin\nnot this line\n")
        .await
        .expect("write the password");
    drop(stdin);
    let out = finish(child, format!("set {id} --user bob"), WAIT).await;
    out.expect_code(0);
    assert_eq!(info_line(&out, "credentials"), "set", "{out:?}");
    env.ok(&["resume", &id]).await;
    env.ok(&["wait", &id]).await;
    let sent = srv.requests_for("/secret.bin");
    assert_eq!(
        sent[0].header("authorization"),
        Some("Basic Ym9iOmZyb20tc3RkaW4="),
        "{:?}",
        sent[0].headers
    );
    // Credentials from the `--credentials-file -` form of stdin, and a file that is not one.
    let out = env
        .run(&["set", &id, "--credentials-file", arg(env.root())])
        .await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("not a regular file"), "{out:?}");
}

#[tokio::test]
async fn issue_13_set_covers_every_job_property_and_info_shows_each() {
    let env = Env::start();
    let id = env.create("everything").await;
    let out = env
        .ok(&[
            "set",
            &id,
            "--display-name",
            "renamed",
            "--description",
            "all of them",
            "--priority",
            "low",
            "--notify-flags",
            "11",
            "--handler",
            "my-handler",
            "--retry-delay",
            "120",
            "--no-progress-timeout",
            "3600",
            "--max-download-time",
            "7200",
            "--notification-interval",
            "250",
            "--header",
            "X-Token: abc",
            "--limit-rate",
            "1M",
            "--max-parallel-files",
            "3",
            "--proxy",
            "http://127.0.0.1:3128",
            "--allow-https-to-http",
            "--no-peer-caching",
            "--auto-complete",
            "--cost-policy",
            "not_metered",
            "--power-policy",
            "not_on_battery",
        ])
        .await;
    for (key, want) in [
        ("name", "renamed"),
        ("description", "all of them"),
        ("priority", "low"),
        ("notify flags", "11"),
        ("notify handler", "my-handler"),
        ("retry delay", "2m"),
        ("no-progress timeout", "1h"),
        ("max download time", "2h"),
        ("notification interval", "250ms"),
        ("headers", "X-Token: abc"),
        ("max parallel files", "3"),
        ("credentials", "unset"),
        ("proxy", "http://127.0.0.1:3128"),
        ("https to http", "allowed"),
        ("peer caching", "off"),
        ("auto complete", "yes"),
        ("cost policy", "not_metered"),
        ("power policy", "not_on_battery"),
    ] {
        assert_eq!(info_line(&out, key), want, "{key}: {out:?}");
    }
    let v = env.info(&id).await;
    assert_eq!(v["minimum_notification_interval_ms"], 250, "{v}");
    assert_eq!(v["proxy"], "http://127.0.0.1:3128", "{v}");
    assert_eq!(v["allow_https_to_http"], true, "{v}");
    assert_eq!(v["peer_caching"], false, "{v}");
    assert_eq!(v["bandwidth_limit_bps"], 1_048_576, "{v}");
    // And back: every nullable setting can return to its default.
    let v = env
        .json(&[
            "set",
            &id,
            "--no-proxy",
            "--no-https-to-http",
            "--peer-caching",
            "--no-handler",
            "--default-max-download-time",
            "--no-bandwidth-limit",
            "--clear-headers",
        ])
        .await;
    assert_eq!(v["proxy"], serde_json::Value::Null, "{v}");
    assert_eq!(v["allow_https_to_http"], false, "{v}");
    assert_eq!(v["peer_caching"], true, "{v}");
    assert_eq!(v["notify_handler"], serde_json::Value::Null, "{v}");
    assert_eq!(v["max_download_time_s"], 7_776_000, "{v}");
    assert_eq!(v["bandwidth_limit_bps"], serde_json::Value::Null, "{v}");
    assert_eq!(v["custom_headers"], serde_json::json!([]), "{v}");
    // A proxy the daemon cannot use is refused with the field named.
    let out = env.run(&["set", &id, "--proxy", "ftp://nope"]).await;
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("proxy"), "{out:?}");
}

#[tokio::test]
async fn issue_13_set_user_prompts_for_the_password_without_echo_on_a_terminal() {
    let env = Env::start();
    let srv = TestServer::start().await;
    let id = job_with_file(&env, &srv, "prompted").await;
    let Some(term) = crate::everyday::on_terminal(
        &env,
        100,
        "password for carol: ",
        "type:typed-secret",
        &["set", &id, "--user", "carol"],
    )
    .await
    else {
        return;
    };
    assert_eq!(term.code, Some(0), "{}", term.output);
    assert!(
        !term.output.contains("typed-secret"),
        "the password was echoed: {}",
        term.output
    );
    assert_eq!(env.info(&id).await["credentials_set"], true);
    env.ok(&["resume", &id]).await;
    env.ok(&["wait", &id]).await;
    // base64("carol:typed-secret")
    assert_eq!(
        srv.requests_for("/secret.bin")[0].header("authorization"),
        Some("Basic Y2Fyb2w6dHlwZWQtc2VjcmV0")
    );
}
