//! Job settings as one type: the wire form keeps its field names, custom headers are parsed
//! once and sent as parsed, and every setting (credentials included) survives a restart.

use ferry_proto::params::{Credentials, JobIdParams, SetParams};
use ferry_proto::{JobState, PowerPolicy, Priority, method};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;

use crate::support::*;

/// Every field `job.get` answered before the settings had their own type.
const JOB_FIELDS: [&str; 30] = [
    "allow_https_to_http",
    "auto_complete",
    "bandwidth_limit_bps",
    "cost_policy",
    "credentials_set",
    "custom_headers",
    "description",
    "display_name",
    "error",
    "error_count",
    "job_id",
    "max_download_time_s",
    "max_parallel_files",
    "minimum_notification_interval_ms",
    "minimum_retry_delay_s",
    "no_progress_timeout_s",
    "notify_cmdline",
    "notify_flags",
    "notify_handler",
    "notify_interface",
    "owner_uid",
    "peer_caching",
    "power_policy",
    "priority",
    "progress",
    "proxy",
    "state",
    "times",
    "type",
    "waiting",
];

#[tokio::test]
async fn issue_12_job_wire_form_keeps_every_field_and_never_the_credentials() {
    let d = daemon();
    let c = d.client().await;
    let id = job_with(&c, vec![]).await;
    c.set(SetParams {
        job_id: id.clone(),
        credentials: Some(Some(Credentials {
            scheme: "basic".into(),
            user: "u".into(),
            password: "wire-secret".into(),
        })),
        ..SetParams::default()
    })
    .await
    .expect("job.set");
    let raw: serde_json::Value = c
        .call_json::<method::JobGet>(JobIdParams { job_id: id })
        .await
        .expect("job.get");
    let keys: Vec<&str> = raw
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = JOB_FIELDS.to_vec();
    want.sort_unstable();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, want, "{raw}");
    assert_eq!(raw["credentials_set"], true);
    assert!(!raw.to_string().contains("wire-secret"), "{raw}");
}

#[tokio::test]
async fn issue_12_custom_headers_are_parsed_once_and_sent_as_parsed() {
    let d = daemon();
    let c = d.client().await;
    let srv = TestServer::start().await;
    srv.add_file("/h", TestContent::new(5, 1000).bytes);
    let id = job_with(&c, vec![spec(&srv.url("/h"), &d.files_dir().join("h"))]).await;
    let job = c
        .set(SetParams {
            job_id: id.clone(),
            custom_headers: Some(vec!["X-Tight:packed".into(), "X-Loose:   spaced  ".into()]),
            ..SetParams::default()
        })
        .await
        .expect("job.set");
    let shown = job.settings.header_lines();
    assert_eq!(shown, ["X-Tight: packed", "X-Loose: spaced"]);
    c.resume(&id).await.expect("resume");
    wait_state(&c, &id, JobState::Transferred).await;
    let r = &srv.requests_for("/h")[0];
    assert_eq!(r.header("x-tight"), Some("packed"));
    assert_eq!(r.header("x-loose"), Some("spaced"));
}

#[tokio::test]
async fn issue_12_every_setting_survives_a_restart() {
    let mut d = daemon();
    let id = {
        let c = d.client().await;
        let id = job_with(&c, vec![]).await;
        c.set(SetParams {
            job_id: id.clone(),
            display_name: Some("kept".into()),
            description: Some("all of it".into()),
            priority: Some(Priority::High),
            notify_flags: Some(11),
            notify_cmdline: Some(Some(vec!["/bin/true".into()])),
            notify_handler: Some(Some("h".into())),
            minimum_retry_delay_s: Some(77),
            no_progress_timeout_s: Some(88),
            max_download_time_s: Some(Some(99)),
            minimum_notification_interval_ms: Some(111),
            custom_headers: Some(vec!["X-K: v".into()]),
            bandwidth_limit_bps: Some(Some(12_345)),
            max_parallel_files: Some(3),
            credentials: Some(Some(Credentials {
                scheme: "basic".into(),
                user: "u".into(),
                password: "p".into(),
            })),
            proxy: Some(Some("http://127.0.0.1:9".into())),
            allow_https_to_http: Some(true),
            peer_caching: Some(false),
            auto_complete: Some(true),
            cost_policy: Some(Some(ferry_proto::CostPolicy::NOT_METERED)),
            power_policy: Some(Some(PowerPolicy::NotOnBattery)),
        })
        .await
        .expect("job.set");
        id
    };
    let before = d.client().await.get(&id).await.expect("job.get");
    d.restart();
    let after = d.client().await.get(&id).await.expect("job.get");
    assert_eq!(after.settings, before.settings);
    assert!(after.credentials_set);
    assert_eq!(after.settings.display_name, "kept");
    assert_eq!(after.settings.max_download_time_s, 99);
    assert!(!after.settings.peer_caching && after.settings.auto_complete);
}
