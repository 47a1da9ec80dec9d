//! `ferryd`, the Ferry daemon, as a library: [`run`] serves the local API until SIGTERM/SIGINT.
//!
//! It owns the job store (`ferry-store`), applies the BITS state machine and scheduling rules
//! (`ferry-core`), drives transfers (`ferry-fetch`) and speaks protocol 1 (`ferry-proto`,
//! `ferry-rpc`) on a Unix socket, identifying every caller with `SO_PEERCRED`. It is not a
//! client library: applications use `ferry-client`.

mod api;
pub mod arenas;
mod clock;
mod conditions;
mod config;
mod daemon;
mod daemon_wide;
mod error;
mod handlers;
mod host_slots;
mod identity;
mod job;
mod leftovers;
mod limits;
mod listener;
pub mod logfile;
#[cfg(test)]
mod module_graph;
mod notifier;
mod peer_cache;
mod recovery;
mod resident;
mod scheduler;
mod supervise;
mod systemd;
mod transfer;
mod upload_sessions;

pub use config::{DaemonOptions, LimitSettings, Limits, Mode};
pub use daemon_wide::{DaemonSettings, MAX_CONNECTIONS_PER_HOST, MAX_RETRY_DELAY_FLOOR_S};
pub use error::EXIT_TASK_DIED;
pub use error::{DaemonError, EXIT_ALREADY_RUNNING, EXIT_CONFIG, EXIT_FAILURE, EXIT_STORE};

use std::sync::Arc;

use ferry_core::state::Trigger;
use ferry_proto::JobState;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Mono;
use crate::daemon::{Daemon, DaemonParts};

/// Runs the daemon until SIGTERM or SIGINT, then checkpoints and exits cleanly.
pub async fn run(mut opts: DaemonOptions) -> Result<(), DaemonError> {
    let config = {
        let (file, required) = (opts.config_file.clone(), opts.config_required);
        let (explicit, default) = if required { (file, None) } else { (None, file) };
        peer_cache::config::load(
            explicit.as_deref(),
            default,
            &opts.state_dir,
            &opts.limit_flags,
        )?
    };
    opts.limits = config.limits.clone();
    opts.policy = config.policy.clone();
    config.daemon.apply(
        &opts.daemon_flags,
        daemon_wide::Targets {
            bandwidth_limit_bps: &mut opts.bandwidth_limit_bps,
            connections_per_host: &mut opts.max_connections_per_host,
            retry_delay_floor_s: &mut opts.retry_delay_floor_s,
        },
    );
    let lock = listener::lock_state_dir(&opts.state_dir)?;
    let (writer, reader) = ferry_store::open(&opts.state_dir)?;
    let fetcher_options = ferry_fetch::FetcherOptions {
        user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
        peer_tls: peer_cache::client_tls(&config)?,
        ..ferry_fetch::FetcherOptions::default()
    };
    let sender = ferry_send::Sender::new(&fetcher_options).map_err(DaemonError::Fetch)?;
    let fetcher = ferry_fetch::Fetcher::new(fetcher_options).map_err(DaemonError::Fetch)?;
    let mono = Mono::start();
    let sweep = Arc::new(Notify::new());
    let state = recovery::recover(
        &opts,
        &writer,
        &reader,
        &mono,
        sweep.clone(),
        lock.previous_crashed,
    )
    .await?;
    // Socket activation hands us the listener; otherwise bind it ourselves.
    let activated = systemd::activated_listener().map_err(DaemonError::io(
        "take the socket-activated listener",
        "LISTEN_FDS",
    ))?;
    let owns_socket = activated.is_none();
    let listener = match activated {
        Some(l) => {
            listener::secure_activated_socket(&l, opts.mode)?;
            l.set_nonblocking(true).map_err(DaemonError::io(
                "use the socket-activated listener",
                "LISTEN_FDS",
            ))?;
            UnixListener::from_std(l).map_err(DaemonError::io(
                "use the socket-activated listener",
                "LISTEN_FDS",
            ))?
        }
        None => listener::bind(&opts.socket, opts.mode)?,
    };
    let socket_path = opts.socket.clone();
    let (kicks, kick_rx) = tokio::sync::mpsc::unbounded_channel();
    let owing: Vec<String> = state
        .jobs()
        .resident()
        .filter(|(_, e)| !e.notification().outbox().is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    let stop = CancellationToken::new();
    let peer_cache =
        peer_cache::PeerCache::start(&config, writer.clone(), &reader, stop.clone()).await?;
    let daemon = Arc::new(Daemon::new(DaemonParts {
        opts,
        store: writer,
        reader,
        fetcher,
        sender,
        mono,
        state,
        kicks,
        peer_cache,
        shutdown: stop,
    }));
    let notifier = tokio::spawn(notifier::run(daemon.clone(), kick_rx));
    // Server-side uploads that a crash left to cancelled jobs are cancelled now.
    upload_sessions::abandon_leftovers(&daemon);
    // Notifications owed before the restart are attempted at once.
    for id in &owing {
        daemon.kick(id, true);
    }
    // A job that was to complete itself and was transferred when the daemon stopped (or whose
    // hand-over failed) is completed now.
    match daemon
        .reader()
        .jobs_needing_memory(&[JobState::Transferred])
    {
        Ok(rows) => {
            for row in rows
                .iter()
                .filter(|r| r.settings.auto_complete && r.state == JobState::Transferred)
            {
                api::spawn_auto_complete(&daemon, &row.id);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot look for transferred jobs to complete"),
    }
    let (unfinished, resident) = {
        let inner = daemon.lock();
        (inner.quotas().live_jobs(), inner.jobs().resident_len())
    };
    tracing::info!(socket = %socket_path.display(), state = %daemon.opts().state_dir.display(),
        mode = daemon.opts().mode.as_str(), activated = !owns_socket, unfinished, resident,
        "ferryd is ready");
    systemd::notify_ready();
    let sched = tokio::spawn(scheduler::run(daemon.clone()));
    let sweeper = tokio::spawn(daemon.sweeper(sweep, daemon.opts().resident_grace).run());
    let mut term =
        signal(SignalKind::terminate()).map_err(DaemonError::io("handle SIGTERM", "signal"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(DaemonError::io("handle SIGINT", "signal"))?;
    let opts = daemon.opts();
    let watcher = conditions::Watcher {
        mono: *daemon.mono(),
        seen: daemon.conditions().clone(),
        wake: daemon.wake().clone(),
        system_bus: opts
            .system_bus
            .clone()
            .or_else(|| opts.policy.system_bus.clone()),
        metered_interfaces: opts.policy.metered_interfaces.clone(),
        shutdown: daemon.shutdown().clone(),
        stop_for_sleep: {
            let daemon = daemon.clone();
            Box::new(move || scheduler::stop_all_for_sleep(&daemon))
        },
    };
    let conditions = tokio::spawn(watcher.run());
    let mut tasks = vec![
        ("scheduler", sched),
        ("notifier", notifier),
        ("sweeper", sweeper),
        ("conditions", conditions),
    ];
    let died = {
        let any_ended = futures_util::future::select_all(tasks.iter_mut().map(|(_, h)| h));
        tokio::select! {
            _ = listener::accept_loop(&daemon, listener) => None,
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); None }
            (result, i, _) = any_ended => Some((i, result)),
        }
    };
    let failure = died.map(|(i, result)| supervise::task_died(tasks.remove(i).0, result));
    if let Some(e) = &failure {
        tracing::error!("{e}");
    }
    systemd::notify_stopping();
    if let Some(pc) = daemon.peer_cache() {
        pc.stop();
    }
    shutdown(&daemon).await;
    daemon.shutdown().cancel();
    for (_, task) in tasks {
        let _ = task.await;
    }
    if owns_socket {
        // An activated socket belongs to systemd, which keeps listening for the next start.
        let _ = std::fs::remove_file(&socket_path);
    }
    match failure {
        // Not a clean exit: the next start recovers as after a crash.
        Some(e) => Err(e),
        None => {
            lock.mark_clean_exit();
            Ok(())
        }
    }
}

/// Stops every transfer (each checkpoints), puts interrupted jobs back in the queue, and waits
/// for the store to commit.
async fn shutdown(d: &Arc<Daemon>) {
    let running = {
        let mut inner = d.lock();
        inner.stop_starting();
        inner.jobs().running()
    };
    for id in &running {
        d.stop_transfer(id).await;
        let mut inner = d.lock();
        let _ = d.transition(&mut inner, id, Trigger::Preempt, |_| {});
    }
    if let Err(e) = d.store().flush().await {
        tracing::error!(error = %e, "the store did not flush at shutdown");
    }
}
