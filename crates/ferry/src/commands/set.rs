//! `ferry set JOB --…`: changes job properties and prints the job as `ferry info` does.

use anyhow::Context as _;
use ferry_client::proto::method;
use ferry_client::proto::params::SetParams;
use serde_json::Value;

use super::Ctx;
use crate::cli::{Choice, SetArgs};
use crate::exit_code;
use crate::resolve::resolve_job;
use crate::usage::UsageError;

/// The `job.set` params the flags ask for, or `None` when no flag was given. A notify command
/// line comes in already resolved (see [`super::handler::absolute_argv`]).
pub fn set_params(job_id: String, a: SetArgs) -> Option<SetParams> {
    let reads_credentials = a.user.is_some() || a.credentials_file.is_some();
    let custom_headers = if a.clear_headers {
        Some(Vec::new())
    } else {
        (!a.headers.is_empty()).then_some(a.headers)
    };
    let bandwidth_limit_bps = if a.no_bandwidth_limit {
        Some(None)
    } else {
        a.bandwidth_limit.map(Some)
    };
    // `null` clears a nullable property; absent leaves it alone.
    let notify_cmdline = if a.no_notify_cmdline {
        Some(None)
    } else {
        a.notify_cmdline.then_some(Some(a.cmdline))
    };
    let notify_handler = if a.no_handler {
        Some(None)
    } else {
        a.handler.map(Some)
    };
    // Every field is named (no `..default()`): a setting added to `job.set` does not compile
    // here until `ferry set` has a flag for it.
    let p = SetParams {
        job_id,
        display_name: a.display_name,
        description: a.description,
        priority: a.priority,
        notify_flags: a.notify_flags,
        notify_cmdline,
        notify_handler,
        minimum_retry_delay_s: a.retry_delay,
        no_progress_timeout_s: a.no_progress_timeout,
        max_download_time_s: if a.default_max_download_time {
            Some(None)
        } else {
            a.max_download_time.map(Some)
        },
        minimum_notification_interval_ms: a.notification_interval,
        custom_headers,
        bandwidth_limit_bps,
        max_parallel_files: a.max_parallel_files,
        auto_complete: flag(a.auto_complete, a.no_auto_complete),
        cost_policy: a.cost_policy.map(Choice::into_option),
        power_policy: a.power_policy.map(Choice::into_option),
        proxy: if a.no_proxy {
            Some(None)
        } else {
            a.proxy.map(Some)
        },
        // New credentials are read (never from the arguments) and filled in by `run`.
        credentials: a.no_credentials.then_some(None),
        allow_https_to_http: flag(a.allow_https_to_http, a.no_https_to_http),
        peer_caching: flag(a.peer_caching, a.no_peer_caching),
    };
    if reads_credentials {
        return Some(p);
    }
    // Serialising skips absent fields, so a bare `{job_id}` means nothing was asked.
    let asked = serde_json::to_value(&p)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.len() > 1))
        .unwrap_or(true);
    asked.then_some(p)
}

/// `--X` / `--no-X`: set, clear, or leave alone.
fn flag(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// Applies the changes and prints the job.
pub async fn run(ctx: &Ctx, mut a: SetArgs) -> anyhow::Result<u8> {
    let job_arg = a.job.clone();
    // Read before anything talks to the daemon: a wrong file fails at once.
    let credentials = super::credentials::read(a.user.clone(), a.credentials_file.clone()).await?;
    if a.notify_cmdline {
        a.cmdline = super::handler::resolve_argv(std::mem::take(&mut a.cmdline))?;
    }
    // The id is filled in once the job is resolved; a bare `ferry set JOB` fails before
    // anything talks to the daemon.
    let Some(mut params) = set_params(String::new(), a) else {
        return Err(UsageError::new(
            "nothing to set: give at least one property (see `ferry set --help`)",
        )
        .into());
    };
    if let Some(c) = credentials {
        params.credentials = Some(Some(c));
    }
    let client = ctx.client().await?;
    let id = resolve_job(&client, &job_arg).await?;
    params.job_id.clone_from(&id);
    let raw: Value = client
        .call_json::<method::JobSet>(params)
        .await
        .with_context(|| format!("cannot change job {id}"))?;
    let job = super::decode_job(&raw)?;
    super::show_job(ctx, &raw, &job)?;
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    fn params(args: &[&str]) -> Option<SetParams> {
        let cli = Cli::try_parse_from([&["ferry", "set", "j"], args].concat()).unwrap();
        let Command::Set(a) = cli.command else {
            panic!("not set")
        };
        set_params("id".into(), a)
    }

    #[test]
    fn notify_fields_set_clear_or_stay() {
        let p = params(&["--notify-cmdline", "--", "/bin/n", "a"]).unwrap();
        assert_eq!(
            p.notify_cmdline,
            Some(Some(vec!["/bin/n".into(), "a".into()]))
        );
        assert_eq!(p.notify_handler, None);
        let p = params(&["--no-notify-cmdline", "--no-handler"]).unwrap();
        assert_eq!(p.notify_cmdline, Some(None));
        assert_eq!(p.notify_handler, Some(None));
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"job_id": "id", "notify_cmdline": null, "notify_handler": null})
        );
        let p = params(&["--handler", "h"]).unwrap();
        assert_eq!(p.notify_handler, Some(Some("h".into())));
        assert_eq!(p.notify_cmdline, None);
        assert!(params(&[]).is_none());
    }

    #[test]
    fn cost_and_power_policies_set_or_return_to_the_default() {
        use ferry_proto::{CostPolicy, PowerPolicy};
        let p = params(&["--cost-policy", "not_metered"]).unwrap();
        assert_eq!(p.cost_policy, Some(Some(CostPolicy::NOT_METERED)));
        let p = params(&[
            "--cost-policy",
            "0x80000021",
            "--power-policy",
            "not_on_battery",
        ])
        .unwrap();
        assert_eq!(p.cost_policy, Some(Some(CostPolicy(0x8000_0021))));
        assert_eq!(p.power_policy, Some(Some(PowerPolicy::NotOnBattery)));
        let p = params(&["--cost-policy", "default", "--power-policy", "default"]).unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"job_id": "id", "cost_policy": null, "power_policy": null})
        );
        for bad in [
            ["--cost-policy", "cheap"],
            ["--cost-policy", "0x40"],
            ["--power-policy", "eco"],
        ] {
            assert!(
                Cli::try_parse_from([&["ferry", "set", "j"][..], &bad[..]].concat()).is_err(),
                "{bad:?}"
            );
        }
    }
}
