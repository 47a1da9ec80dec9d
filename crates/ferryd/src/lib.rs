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
mod leftovers;
mod limits;
mod listener;
pub mod logfile;
mod notifier;
mod peer_cache;
mod resident;
mod scheduler;
mod supervise;
mod systemd;
mod transfer;

pub use config::{DaemonOptions, LimitSettings, Limits, Mode};
pub use daemon_wide::{DaemonSettings, MAX_CONNECTIONS_PER_HOST, MAX_RETRY_DELAY_FLOOR_S};
pub use error::EXIT_TASK_DIED;
pub use error::{DaemonError, EXIT_ALREADY_RUNNING, EXIT_CONFIG, EXIT_FAILURE, EXIT_STORE};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_core::state::Trigger;
use ferry_proto::JobState;
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Mono;
use crate::daemon::{Caller, Daemon, Entry, Inner};

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
    let fetcher = ferry_fetch::Fetcher::new(ferry_fetch::FetcherOptions {
        user_agent: format!("ferry/{}", env!("CARGO_PKG_VERSION")),
        peer_tls: peer_cache::client_tls(&config)?,
        ..ferry_fetch::FetcherOptions::default()
    })
    .map_err(DaemonError::Fetch)?;
    let mono = Mono::start();
    let sweep = Arc::new(Notify::new());
    let inner = recover(
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
    let bandwidth = opts.bandwidth_limit_bps;
    let max_connections_per_host = opts.max_connections_per_host;
    let (kicks, kick_rx) = tokio::sync::mpsc::unbounded_channel();
    let owing: Vec<String> = inner
        .jobs
        .resident()
        .filter(|(_, e)| !e.rt.outbox.is_empty())
        .map(|(id, _)| id.clone())
        .collect();
    let stop = CancellationToken::new();
    let peer_cache =
        peer_cache::PeerCache::start(&config, writer.clone(), &reader, stop.clone()).await?;
    let daemon = Arc::new(Daemon {
        opts,
        store: writer,
        reader: Arc::new(reader),
        fetcher: Arc::new(fetcher),
        mono,
        inner: Mutex::new(inner),
        wake: Notify::new(),
        shutdown: stop,
        kicks,
        user_slots: Mutex::new(HashMap::new()),
        global_bucket: ferry_fetch::throttle::Bucket::new(bandwidth),
        host_slots: host_slots::HostSlots::new(max_connections_per_host),
        holds: Mutex::new(HashMap::new()),
        peer_cache,
        conditions: tokio::sync::watch::Sender::new(Default::default()),
    });
    let notifier = tokio::spawn(notifier::run(daemon.clone(), kick_rx));
    // Notifications owed before the restart are attempted at once.
    for id in &owing {
        daemon.kick(id, true);
    }
    // A job that was to complete itself and was transferred when the daemon stopped (or whose
    // hand-over failed) is completed now.
    match daemon.reader.jobs_needing_memory(&[JobState::Transferred]) {
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
        (inner.live_jobs, inner.jobs.resident_len())
    };
    tracing::info!(socket = %socket_path.display(), state = %daemon.opts.state_dir.display(),
        mode = daemon.opts.mode.as_str(), activated = !owns_socket, unfinished, resident,
        "ferryd is ready");
    systemd::notify_ready();
    let sched = tokio::spawn(scheduler::run(daemon.clone()));
    let sweeper = tokio::spawn(resident::sweeper(
        daemon.clone(),
        sweep,
        daemon.opts.resident_grace,
    ));
    let mut term =
        signal(SignalKind::terminate()).map_err(DaemonError::io("handle SIGTERM", "signal"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(DaemonError::io("handle SIGINT", "signal"))?;
    let conditions = tokio::spawn(conditions::run(daemon.clone()));
    let mut tasks = vec![
        ("scheduler", sched),
        ("notifier", notifier),
        ("sweeper", sweeper),
        ("conditions", conditions),
    ];
    let died = {
        let any_ended = futures_util::future::select_all(tasks.iter_mut().map(|(_, h)| h));
        tokio::select! {
            _ = accept_loop(&daemon, listener) => None,
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
    if let Some(pc) = &daemon.peer_cache {
        pc.stop();
    }
    shutdown(&daemon).await;
    daemon.shutdown.cancel();
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

async fn accept_loop(d: &Arc<Daemon>, listener: UnixListener) {
    let counts = Arc::new(limits::UidCounts::default());
    let limit = d.opts.limits.connections_per_user;
    // Refusals in progress hold a descriptor for a moment each; beyond this many at once a
    // refused connection is closed without the explanation, so a flood cannot exhaust them.
    let refusals = Arc::new(tokio::sync::Semaphore::new(64));
    let own_uid = nix::unistd::geteuid().as_raw();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the caller's credentials; closing");
                continue;
            }
        };
        let caller = Caller {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        };
        if let Err(why) = listener::may_connect(d.opts.mode, own_uid, caller.uid) {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                "connection refused: {why}"
            );
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                let error =
                    ferry_proto::ProtoError::kind(ferry_proto::ErrorKind::AccessDenied, why);
                tokio::spawn(async move {
                    send_refusal(stream, error).await;
                    drop(permit);
                });
            }
            continue;
        }
        let Some(slot) = counts.take(caller.uid, limit) else {
            tracing::warn!(
                uid = caller.uid,
                pid = caller.pid,
                limit,
                "connection refused: the user has [limits] connections_per_user connections open"
            );
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse_connection(stream, caller.uid, limit).await;
                    drop(permit);
                });
            }
            continue;
        };
        let (r, w) = stream.into_split();
        let session = Arc::new(api::Session::new(d.clone(), caller));
        let bounds = d.opts.limits.connection_bounds();
        let (_, task) = ferry_rpc::serve_bounded(r, w, Arc::new(api::Connection(session)), bounds);
        // The serving task ends when the connection closes; the slot goes back then.
        tokio::spawn(async move {
            let _ = task.await;
            drop(slot);
        });
    }
}

/// Answers a connection over the per-user limit with one `limit_exceeded` error line (id
/// `null`: no request was read) and closes it. What the caller already sent is drained first,
/// so it reads the error and then a clean end of stream rather than a reset. Bounded in time
/// and bytes: a caller that never reads or never stops writing cannot keep the task.
async fn refuse_connection(stream: tokio::net::UnixStream, uid: u32, limit: u64) {
    let error = limits::exceeded(
        "connections_per_user",
        limit,
        format!(
            "user {uid} already has {limit} connections open to ferryd; close some and try again"
        ),
    );
    send_refusal(stream, error).await;
}

/// Writes `error` as one answer line (id `null`) and closes the connection, draining what the
/// caller already sent (bounded in time and bytes) so it reads the line, not a reset.
async fn send_refusal(mut stream: tokio::net::UnixStream, error: ferry_proto::ProtoError) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let message = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": error});
    let Ok(mut line) = serde_json::to_vec(&message) else {
        return;
    };
    line.push(b'\n');
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&line).await?;
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match stream.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Stops every transfer (each checkpoints), puts interrupted jobs back in the queue, and waits
/// for the store to commit.
async fn shutdown(d: &Arc<Daemon>) {
    let running: Vec<String> = {
        let mut inner = d.lock();
        inner.stopping = true;
        inner
            .jobs
            .resident()
            .filter(|(_, e)| e.rt.running.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    };
    for id in &running {
        d.stop_transfer(id).await;
        let mut inner = d.lock();
        let _ = d.transition(&mut inner, id, Trigger::Preempt, |_| {});
    }
    if let Err(e) = d.store.flush().await {
        tracing::error!(error = %e, "the store did not flush at shutdown");
    }
}

/// Loads what needs memory after a start or a crash: interrupted transfers go back to the
/// queue, retry timers restart, and final jobs past the retention period are dropped. Cold jobs
/// stay in the store (`resident`); only their counts are read, from the state index.
async fn recover(
    opts: &DaemonOptions,
    writer: &ferry_store::Writer,
    reader: &ferry_store::Reader,
    mono: &Mono,
    sweep: Arc<Notify>,
    crashed: bool,
) -> Result<Inner, DaemonError> {
    let final_states = [JobState::Acknowledged, JobState::Cancelled];
    let expired: Vec<String> = reader
        .final_times(&final_states)?
        .into_iter()
        .filter(|(_, t)| {
            t.as_deref()
                .is_some_and(|t| clock::since(t) > opts.history_retention)
        })
        .map(|(id, _)| id)
        .collect();
    if !expired.is_empty() {
        drop(writer.submit(move |tx| expired.iter().try_for_each(|id| tx.delete_job(id))));
        writer.flush().await?;
    }
    leftovers::discard_final_staging(opts, writer, reader, &final_states).await?;
    let mut inner = Inner::new(resident::Jobs::new(reader.another()?, sweep));
    let live: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .collect();
    for (uid, n) in reader.count_jobs_by_owner(&live)? {
        inner.live_jobs += n;
        inner.per_user.insert(uid, n);
    }
    inner.files_per_user = reader.count_files_by_owner(&live)?.into_iter().collect();
    inner.next_job_seq = reader.last_job_seq()? + 1;
    let now = clock::now_rfc3339();
    // After a crash, jobs that may have been transferring can have staging files no row names.
    let mut may_have_run = Vec::new();
    for mut row in reader.jobs_needing_memory(&resident::HOT_STATES)? {
        if crashed
            && matches!(
                row.state,
                JobState::Queued | JobState::Connecting | JobState::Transferring
            )
        {
            may_have_run.push((row.id.clone(), row.owner_uid));
        }
        let mut retry_at = None;
        match row.state {
            JobState::Connecting | JobState::Transferring => {
                let from = row.state;
                row.state = JobState::Queued;
                row.modified = now.clone();
                let r = row.clone();
                let t = now.clone();
                drop(writer.submit(move |tx| {
                    tx.update_job(&r)?;
                    tx.append_event(
                        &r.id,
                        r.owner_uid,
                        &t,
                        ferry_proto::EventKind::State {
                            from,
                            to: JobState::Queued,
                        },
                    )
                    .map(drop)
                }));
            }
            JobState::TransientError => {
                let wait = row
                    .retry_at
                    .as_deref()
                    .map(clock::until)
                    .unwrap_or(Duration::ZERO);
                retry_at = Some(mono.now() + u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            }
            _ => {}
        }
        let mut entry = Entry::from_store(row);
        entry.rt.retry_at = retry_at;
        inner.jobs.insert(entry);
    }
    leftovers::discard_unrecorded_staging(opts, reader, &may_have_run)?;
    let mut next_outbox = 0;
    let mut stale = Vec::new();
    for o in reader.outbox()? {
        next_outbox = next_outbox.max(o.id + 1);
        match inner.jobs.get_mut(&o.job_id) {
            Some(e) if !e.row.state.is_final() => e.rt.outbox.push(o),
            _ => stale.push(o.id),
        }
    }
    if !stale.is_empty() {
        drop(writer.submit(move |tx| tx.delete_outbox(&stale)));
    }
    inner.next_outbox_id = next_outbox.max(1);
    inner.handlers = handlers::Registry::load(reader.handlers()?);
    inner.next_queue_seq = inner.next_job_seq;
    writer.flush().await?;
    Ok(inner)
}
