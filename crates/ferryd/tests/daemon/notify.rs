//! Notifications: live callbacks, handlers started on demand, command lines, flags,
//! retries with stable delivery ids, and ordering.

use std::time::Duration;

use ferry_client::Client;
use ferry_proto::params::{EventsFollowParams, SetParams};
use ferry_proto::{Event, EventKind, JobState};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use serde_json::json;

use crate::callbacks::*;
use crate::support::*;

const CB: Duration = Duration::from_secs(30);

/// Waits for a `notification` event of the job matching `pred` (`callback`, `target`,
/// `outcome`), counting from the start of the log.
pub async fn wait_notification(
    c: &Client,
    job: &str,
    pred: impl Fn(&str, &str, &str) -> bool,
) -> Event {
    wait_notifications(c, job, 1, pred).await
}

/// Waits for the `n`th matching `notification` event of the job (a fresh client each call).
async fn wait_notifications(
    c: &Client,
    job: &str,
    n: usize,
    pred: impl Fn(&str, &str, &str) -> bool,
) -> Event {
    let c = Client::connect_to(c.socket()).await.unwrap();
    c.follow_events(EventsFollowParams {
        after: Some(0),
        job_id: Some(job.into()),
    })
    .await
    .unwrap();
    let mut seen = 0;
    loop {
        let e = tokio::time::timeout(WAIT, c.next_event())
            .await
            .expect("notification event in time")
            .expect("open");
        if let EventKind::Notification {
            callback,
            target,
            outcome,
            ..
        } = &e.kind
            && pred(callback, target, outcome)
        {
            seen += 1;
            if seen == n {
                return e;
            }
        }
    }
}

async fn set(c: &Client, p: SetParams) {
    c.set(p).await.unwrap();
}

fn files(srv: &TestServer, dir: &std::path::Path, n: usize) -> Vec<ferry_proto::FileSpec> {
    (0..n)
        .map(|i| {
            srv.add_file(
                &format!("/n{i}"),
                TestContent::new(50 + i as u64, 2000 + i).bytes,
            );
            spec(&srv.url(&format!("/n{i}")), &dir.join(format!("n{i}")))
        })
        .collect()
}

#[tokio::test]
async fn live_callback_gets_files_in_order_then_transferred_and_completes_inside() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, files(&srv, &dir, 4)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_flags: Some(1 | 2 | 16),
            ..Default::default()
        },
    )
    .await;
    let mut app = LiveApp::connect(&d.socket).await;
    app.answer(Answer::CompleteThenOk);
    app.register(&id).await;
    c.resume(&id).await.unwrap();
    for i in 0..4 {
        let r = app.next(CB).await;
        assert_eq!(r.method, "callback.file_transferred");
        assert_eq!(r.file_index(), Some(i));
        assert!(r.params["file"]["transferred"].as_bool().unwrap());
        assert!(r.params["file"]["temporary_path"].is_string());
    }
    let r = app.next(CB).await;
    assert_eq!(r.method, "callback.job_transferred");
    assert_eq!(r.state(), "transferred");
    wait_state(&c, &id, JobState::Acknowledged).await;
    for i in 0..4 {
        assert!(dir.join(format!("n{i}")).exists());
    }
    assert!(
        app.quiet_for(Duration::from_millis(300)).await,
        "nothing after the job is final"
    );
}

#[tokio::test]
async fn registering_after_the_event_still_delivers() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    let mut app = LiveApp::connect(&d.socket).await;
    app.register(&id).await;
    let r = app.next(CB).await;
    assert_eq!(r.method, "callback.job_transferred");
    // Delivered once: not again.
    assert!(app.quiet_for(Duration::from_millis(500)).await);
}

#[tokio::test]
async fn failed_callback_is_retried_with_the_same_delivery_id() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    fast_retry(&c, &id, None).await;
    let mut app = LiveApp::connect(&d.socket).await;
    app.answer(Answer::Fail);
    app.register(&id).await;
    c.resume(&id).await.unwrap();
    let first = app.next(CB).await;
    assert_eq!(first.method, "callback.job_transferred");
    app.answer(Answer::Ok);
    let again = app.next(CB).await;
    assert_eq!(again.method, "callback.job_transferred");
    assert_eq!(again.delivery_id(), first.delivery_id());
    assert!(!first.delivery_id().is_empty());
    // The event log shows the failed attempt, then the successful one.
    wait_notification(&c, &id, |_, _, o| o == "ok").await;
    let ev = c
        .read_events(ferry_proto::params::EventsReadParams {
            job_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<(String, u64)> = ev
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notification {
                outcome, attempt, ..
            } => Some((outcome.clone(), *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes.first(), Some(&("failed".to_string(), 1)));
    assert!(outcomes.contains(&("ok".to_string(), 2)), "{outcomes:?}");
}

#[tokio::test]
async fn last_interface_wins_and_clear_or_disconnect_falls_back_to_cmdline() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "cmd.log");
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_cmdline: Some(Some(cmdline(&log, 0))),
            ..Default::default()
        },
    )
    .await;
    // Disable delivery while the targets are arranged.
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_flags: Some(1 | 4),
            ..Default::default()
        },
    )
    .await;
    let mut first = LiveApp::connect(&d.socket).await;
    let mut second = LiveApp::connect(&d.socket).await;
    first.register(&id).await;
    second.register(&id).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    assert!(
        second.quiet_for(Duration::from_millis(300)).await,
        "flag 4 suppresses delivery"
    );
    // Lift flag 4: the last registration gets it, the first nothing.
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_flags: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(second.next(CB).await.method, "callback.job_transferred");
    assert!(first.quiet_for(Duration::from_millis(300)).await);
    // Owed again after a resume cycle? No: complete is what ends it. Make a new transferred
    // notification by adding a file and resuming, then clear the interface: the command line
    // gets it.
    srv.add_file("/extra", TestContent::new(60, 100).bytes);
    c.add_files(&id, vec![spec(&srv.url("/extra"), &dir.join("extra"))])
        .await
        .unwrap();
    second
        .call("job.clear_notify_interface", json!({"job_id": id}))
        .await;
    drop(first);
    c.resume(&id).await.unwrap();
    wait_notification(&c, &id, |cb, t, o| {
        cb == "job_transferred" && t == "cmdline" && o == "ok"
    })
    .await;
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(lines.starts_with(&format!("transferred {id} ")), "{lines}");
    assert!(second.quiet_for(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn cmdline_exit_1_runs_again_exit_0_does_not() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "cmd.log");
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    fast_retry(&c, &id, None).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_cmdline: Some(Some(cmdline(&log, 1))),
            ..Default::default()
        },
    )
    .await;
    c.resume(&id).await.unwrap();
    // Exit 1 runs the command again after the retry delay.
    wait_notifications(&c, &id, 2, |_, t, o| t == "cmdline" && o == "failed").await;
    let runs = || std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(runs() >= 2, "exit 1 ran the command again");
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_cmdline: Some(Some(cmdline(&log, 0))),
            ..Default::default()
        },
    )
    .await;
    wait_notification(&c, &id, |_, t, o| t == "cmdline" && o == "ok").await;
    let after_ok = runs();
    // Nothing runs after success: wait for a retry period and check the count.
    let mut app = LiveApp::connect(&d.socket).await;
    assert!(app.quiet_for(Duration::from_millis(1500)).await);
    assert_eq!(runs(), after_ok);
}

#[tokio::test]
async fn flags_select_exactly_and_modification_is_coalesced() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, files(&srv, &dir, 3)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_flags: Some(8),
            minimum_notification_interval_ms: Some(200),
            ..Default::default()
        },
    )
    .await;
    let mut app = LiveApp::connect(&d.socket).await;
    app.register(&id).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    // Drain until quiet: every callback is a modification, and there are fewer than changes.
    let mut got = Vec::new();
    while !app.quiet_for(Duration::from_millis(600)).await {
        // quiet_for consumed one callback when it returned false.
        got.push(());
    }
    assert!(!got.is_empty(), "modification callbacks arrive");
    let ev = c
        .read_events(ferry_proto::params::EventsReadParams {
            job_id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let changes = ev
        .events
        .iter()
        .filter(|e| !matches!(e.kind, EventKind::Notification { .. }))
        .count();
    let sent: Vec<String> = ev
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Notification { callback, .. } => Some(callback.clone()),
            _ => None,
        })
        .collect();
    assert!(
        sent.iter().all(|cb| cb == "job_modification"),
        "flag 8 selects only modification: {sent:?}"
    );
    assert!(
        sent.len() < changes,
        "coalesced: {} callbacks for {changes} changes",
        sent.len()
    );
    // Entering `error` is not a modification: with flag 8 alone, nothing arrives.
    c.set_validation(&id, 0, false).await.unwrap();
    wait_state(&c, &id, JobState::Error).await;
    assert!(
        app.quiet_for(Duration::from_millis(600)).await,
        "no callback for entering error"
    );
}

#[tokio::test]
async fn handler_is_started_on_demand_and_completes_the_job() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "handler.log");
    let argv = handler_script(d.dir.path(), &log, true);
    let _: serde_json::Value = c
        .call_raw(
            "handler.register",
            json!({"name": "updater", "argv": argv, "activation_timeout_s": 20}),
        )
        .await
        .unwrap();
    let id = job_with(&c, files(&srv, &dir, 2)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_flags: Some(1 | 2 | 16),
            notify_handler: Some(Some("updater".into())),
            ..Default::default()
        },
    )
    .await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Acknowledged).await;
    let lines = log_lines(&log);
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(events.first(), Some(&"started"));
    assert!(events.contains(&"attached"));
    let order: Vec<&str> = events
        .iter()
        .copied()
        .filter(|e| e.starts_with("callback."))
        .collect();
    assert_eq!(
        order,
        [
            "callback.file_transferred",
            "callback.file_transferred",
            "callback.job_transferred"
        ]
    );
    assert!(dir.join("n0").exists() && dir.join("n1").exists());
}

#[tokio::test]
async fn owed_notification_survives_kill_9_and_reaches_the_handler() {
    let mut d = daemon();
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "handler.log");
    let id = {
        let c = d.client().await;
        let id = job_with(&c, files(&srv, &dir, 1)).await;
        // No handler registered yet: the notification stays owed.
        set(
            &c,
            SetParams {
                job_id: id.clone(),
                notify_handler: Some(Some("late".into())),
                ..Default::default()
            },
        )
        .await;
        c.resume(&id).await.unwrap();
        wait_state(&c, &id, JobState::Transferred).await;
        id
    };
    d.kill9();
    d.restart();
    let c = d.client().await;
    assert_eq!(c.get(&id).await.unwrap().state, JobState::Transferred);
    let argv = handler_script(d.dir.path(), &log, true);
    let _: serde_json::Value = c
        .call_raw("handler.register", json!({"name": "late", "argv": argv}))
        .await
        .unwrap();
    wait_state(&c, &id, JobState::Acknowledged).await;
    assert!(
        log_lines(&log)
            .iter()
            .any(|l| l["event"] == "callback.job_transferred")
    );
}

#[tokio::test]
async fn broken_handlers_fail_visibly_and_fall_back() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "cmd.log");
    // A handler program that does not exist, then one that exits without attaching.
    let _: serde_json::Value = c
        .call_raw(
            "handler.register",
            json!({"name": "ghost", "argv": ["/nonexistent/handler"]}),
        )
        .await
        .unwrap();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_handler: Some(Some("ghost".into())),
            notify_cmdline: Some(Some(cmdline(&log, 0))),
            ..Default::default()
        },
    )
    .await;
    c.resume(&id).await.unwrap();
    let e = wait_notification(&c, &id, |_, t, o| t == "handler" && o == "unreachable").await;
    let EventKind::Notification { detail, .. } = e.kind else {
        unreachable!()
    };
    assert!(detail.unwrap().contains("/nonexistent/handler"));
    wait_notification(&c, &id, |_, t, o| t == "cmdline" && o == "ok").await;

    // A wrong token is refused with access_denied.
    let mut raw = crate::protocol::Raw::connect(&d.socket).await;
    let e = raw
        .error(
            "handler.attach",
            json!({"name": "ghost", "token": "forged"}),
        )
        .await;
    assert_eq!(e["code"], -32002);
}

#[tokio::test]
async fn validation_false_fails_the_job_and_resume_fetches_again() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    c.set_validation(&id, 0, false).await.unwrap();
    let job = wait_state(&c, &id, JobState::Error).await;
    assert_eq!(job.error.unwrap().code, "VALIDATION_FAILED");
    assert_eq!(job.progress.files_transferred, 0);
    c.resume(&id).await.unwrap();
    wait_state(&c, &id, JobState::Transferred).await;
    assert_eq!(srv.requests_for("/n0").len(), 2, "fetched again");
    let f = c.set_validation(&id, 0, true).await.unwrap();
    assert_eq!(f.validation, ferry_proto::Validation::Valid);
    c.complete(&id).await.unwrap();
}

#[tokio::test]
async fn system_mode_runs_handler_and_cmdline_as_the_owner() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED system_mode_runs_handler_and_cmdline_as_the_owner: needs root");
        return;
    }
    let d = daemon_with(&["--system"]);
    let srv = TestServer::start().await;
    srv.add_file("/own", TestContent::new(70, 1000).bytes);
    // A destination directory nobody may write.
    let dir = d.dir.path().join("nobody-files");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let hlog = shared_log(d.dir.path(), "handler.log");
    let clog = shared_log(d.dir.path(), "cmd.log");
    let argv = handler_script(d.dir.path(), &hlog, false);
    // Act as nobody through python3 (see access.rs): create, register, set, resume.
    let url = srv.url("/own");
    let calls = [
        json!({"method": "handler.register", "params": {"name": "h", "argv": argv}}),
        json!({"method": "job.create", "params": {"display_name": "nobody's", "files": [{"remote_url": url, "local_path": dir.join("own")}]}}),
    ];
    let answers = crate::access::calls_as_nobody(&d.socket, &calls);
    let id = answers[1]["result"]["job_id"]
        .as_str()
        .expect("created")
        .to_string();
    let calls = [
        json!({"method": "job.set", "params": {"job_id": id, "notify_flags": 3, "notify_handler": "h", "notify_cmdline": cmdline(&clog, 0)}}),
        json!({"method": "job.resume", "params": {"job_id": id}}),
    ];
    crate::access::calls_as_nobody(&d.socket, &calls);
    let c = d.client().await; // root sees every job
    wait_notification(&c, &id, |cb, t, o| {
        cb == "job_transferred" && t == "handler" && o == "ok"
    })
    .await;
    let lines = log_lines(&hlog);
    assert!(lines.iter().all(|l| l["uid"] == 65534), "{lines:?}");
    // Now the command line: drop the handler.
    let calls = [
        json!({"method": "job.set", "params": {"job_id": id, "notify_handler": null}}),
        json!({"method": "job.add_files", "params": {"job_id": id, "files": [{"remote_url": url, "local_path": dir.join("own2")}]}}),
        json!({"method": "job.resume", "params": {"job_id": id}}),
    ];
    crate::access::calls_as_nobody(&d.socket, &calls);
    wait_notification(&c, &id, |cb, t, o| {
        cb == "job_transferred" && t == "cmdline" && o == "ok"
    })
    .await;
    let out = std::fs::read_to_string(&clog).unwrap();
    assert!(out.trim().ends_with(" 65534"), "{out}");
}

#[tokio::test]
async fn disconnected_callback_falls_back_to_the_handler() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let log = shared_log(d.dir.path(), "handler.log");
    let argv = handler_script(d.dir.path(), &log, false);
    let _: serde_json::Value = c
        .call_raw("handler.register", json!({"name": "fb", "argv": argv}))
        .await
        .unwrap();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_handler: Some(Some("fb".into())),
            ..Default::default()
        },
    )
    .await;
    let app = LiveApp::connect(&d.socket).await;
    app.register(&id).await;
    assert!(c.get(&id).await.unwrap().notify_interface);
    // The application goes away: its connection closes.
    app.peer.close();
    app.peer.closed().await;
    c.resume(&id).await.unwrap();
    wait_notification(&c, &id, |cb, t, o| {
        cb == "job_transferred" && t == "handler" && o == "ok"
    })
    .await;
    assert!(
        log_lines(&log)
            .iter()
            .any(|l| l["event"] == "callback.job_transferred")
    );
    assert!(!c.get(&id).await.unwrap().notify_interface);
}

#[tokio::test]
async fn garbage_silence_and_disconnect_mid_callback_are_failures_then_retried() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let d = daemon_with(&["--callback-timeout", "1"]);
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    fast_retry(&c, &id, None).await;
    // A raw application: registers, then answers the first callback with garbage, the second
    // not at all, and disconnects during the third.
    let stream = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(r).lines();
    w.write_all(format!("{}\n", json!({"jsonrpc": "2.0", "id": 1, "method": "job.set_notify_interface", "params": {"job_id": id}})).as_bytes())
        .await
        .unwrap();
    let ack = lines.next_line().await.unwrap().unwrap();
    assert!(ack.contains("\"result\""), "{ack}");
    c.resume(&id).await.unwrap();
    let mut delivery_ids = Vec::new();
    for round in 0..2 {
        // Skip the daemon's answer to our garbage (-32700); wait for the next request.
        let req = loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v.get("method").is_some() {
                break v;
            }
            assert_eq!(v["error"]["code"], -32700, "{v}");
        };
        assert_eq!(req["method"], "callback.job_transferred");
        delivery_ids.push(req["params"]["delivery_id"].as_str().unwrap().to_string());
        if round == 0 {
            w.write_all(b"this is not json\n").await.unwrap();
        }
    }
    assert_eq!(
        delivery_ids[0], delivery_ids[1],
        "the retry carries the same delivery_id"
    );
    let e = wait_notifications(&c, &id, 2, |_, t, o| t == "interface" && o == "failed").await;
    let EventKind::Notification { detail, .. } = e.kind else {
        unreachable!()
    };
    assert!(detail.unwrap().contains("did not answer"));
    // Third attempt: hang up while it is outstanding.
    let _ = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap();
    drop(w);
    drop(lines);
    wait_notification(&c, &id, |_, t, o| t == "interface" && o == "unreachable").await;
    // The notification is still owed: a new application gets it at once.
    let mut app = LiveApp::connect(&d.socket).await;
    app.register(&id).await;
    let r = app.next(CB).await;
    assert_eq!(r.delivery_id(), delivery_ids[0]);
}

#[tokio::test]
async fn a_handler_that_never_attaches_times_out() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let _: serde_json::Value = c
        .call_raw(
            "handler.register",
            json!({"name": "sleepy", "argv": ["/bin/sleep", "30"], "activation_timeout_s": 1}),
        )
        .await
        .unwrap();
    let id = job_with(&c, files(&srv, &dir, 1)).await;
    set(
        &c,
        SetParams {
            job_id: id.clone(),
            notify_handler: Some(Some("sleepy".into())),
            ..Default::default()
        },
    )
    .await;
    c.resume(&id).await.unwrap();
    let e = wait_notification(&c, &id, |_, t, o| t == "handler" && o == "unreachable").await;
    let EventKind::Notification { detail, .. } = e.kind else {
        unreachable!()
    };
    assert!(detail.unwrap().contains("did not attach within 1 s"));
}

#[tokio::test]
async fn notify_registration_rules() {
    let d = daemon();
    let mut raw = crate::protocol::Raw::connect(&d.socket).await;
    let r = raw.call("job.create", json!({"display_name": "x"})).await;
    let id = r["result"]["job_id"].as_str().unwrap().to_string();
    let e = raw
        .error(
            "job.set",
            json!({"job_id": id, "notify_cmdline": "/bin/true"}),
        )
        .await;
    assert_eq!(
        (e["code"].as_i64(), e["data"]["field"].as_str()),
        (Some(-32602), Some("notify_cmdline"))
    );
    let e = raw
        .error(
            "handler.register",
            json!({"name": "h", "argv": ["relative/prog"]}),
        )
        .await;
    assert_eq!(e["data"]["field"], "argv");
    raw.call("job.cancel", json!({"job_id": id})).await;
    let e = raw
        .error("job.set_notify_interface", json!({"job_id": id}))
        .await;
    assert_eq!(e["code"], -32001);
    let e = raw
        .error("job.set", json!({"job_id": id, "notify_flags": 1}))
        .await;
    assert_eq!(e["code"], -32001);
    // Registrations persist and list per user.
    raw.call(
        "handler.register",
        json!({"name": "h", "argv": ["/bin/true"]}),
    )
    .await;
    let l = raw.call("handler.list", json!({})).await;
    assert_eq!(l["result"]["handlers"][0]["name"], "h");
    assert_eq!(l["result"]["handlers"][0]["activation_timeout_s"], 30);
}

#[tokio::test]
async fn at_most_four_callbacks_are_outstanding_per_user() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    let dir = d.files_dir();
    let mut app = LiveApp::connect(&d.socket).await;
    app.answer(Answer::Hold);
    let mut ids = Vec::new();
    for i in 0..6 {
        srv.add_file(&format!("/u{i}"), TestContent::new(120 + i, 100).bytes);
        let id = job_with(
            &c,
            vec![spec(
                &srv.url(&format!("/u{i}")),
                &dir.join(format!("u{i}")),
            )],
        )
        .await;
        app.register(&id).await;
        c.resume(&id).await.unwrap();
        ids.push(id);
    }
    for id in &ids {
        wait_state(&c, id, JobState::Transferred).await;
    }
    // Four callbacks arrive and are held; the other two wait for a free slot.
    for _ in 0..4 {
        app.next(CB).await;
    }
    assert!(
        app.quiet_for(Duration::from_millis(500)).await,
        "a fifth callback while four are outstanding"
    );
    app.hold.add_permits(1);
    app.next(CB).await;
    assert!(app.quiet_for(Duration::from_millis(300)).await);
    app.hold.add_permits(10);
    app.next(CB).await;
}
