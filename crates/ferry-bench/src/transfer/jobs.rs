//! The daemon's own numbers: many jobs at once, job creation rate, restart with a large queue,
//! and what an idle daemon costs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_proto::method;
use serde_json::json;

use super::conn::Conn;
use super::files::Ctx;
use super::procfs;
use super::setup;
use super::timing::Samples;
use crate::daemon::Daemon;

/// How long the many-jobs run may go without an event before the daemon is declared stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Requests in flight at once while creating the large queue.
pub const CREATE_WINDOW: usize = 1024;
/// How many equal slices the large queue's creation is timed in.
pub const CREATE_SLICES: usize = 10;
/// Quiet time before an idle window: longer than the 10 s after which Tokio's idle blocking
/// threads exit, so such an exit (a one-off wake-up) does not fall into the window.
pub const IDLE_SETTLE: Duration = Duration::from_secs(11);
/// The idle window, in 1 s samples.
pub const IDLE_WINDOW_S: u64 = 10;
/// The limits the large-queue daemon runs with.
pub const RESTART_FLAGS: [&str; 4] = ["--max-jobs-per-user", "200000", "--max-jobs", "200000"];

/// The many-jobs run.
#[derive(Debug, Clone, Default)]
pub struct ManyJobs {
    /// First `job.create` sent → last `job.complete` answered, seconds.
    pub total: Samples,
    /// … of which creating every job.
    pub create: Samples,
    /// … resuming every job.
    pub resume: Samples,
    /// … until every job was reported transferred.
    pub transfer: Samples,
    /// … completing every job.
    pub complete: Samples,
    /// `ferryd`'s CPU time per run, seconds.
    pub ferryd_cpu: Samples,
}

/// `n` jobs of one file each, created, resumed and completed over one connection with every
/// request of a step in flight at once; done `ctx.runs` times against one fresh daemon.
pub async fn many(ctx: &Ctx<'_>) -> Result<ManyJobs> {
    let root = ctx.work.daemon_root("jobs");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let daemon = Daemon::start(ctx.ferryd, &root).await?;
    let measured = many_with(ctx, &daemon).await;
    let stopped = daemon.stop().await;
    let m = measured?;
    stopped?;
    Ok(m)
}

/// [`many`] once the daemon runs.
async fn many_with(ctx: &Ctx<'_>, daemon: &Daemon) -> Result<ManyJobs> {
    let pid = daemon.pid().context("ferryd is not running")?;
    let n = ctx.sizes.jobs;
    let mut r = ManyJobs::default();
    for run in 0..ctx.runs {
        let out = ctx.work.reset_out()?;
        let mut conn = Conn::open(daemon.socket()).await?;
        conn.call(method::EVENTS_FOLLOW, json!({})).await?;
        let cpu0 = procfs::cpu_seconds(pid)?;
        let t0 = Instant::now();
        let mut ids = vec![String::new(); n];
        conn.pipelined(
            n,
            n,
            |i| {
                let name = setup::job_name(i);
                let file = json!({
                    "remote_url": format!("{}/m/{name}", ctx.base_url),
                    "local_path": out.join(&name).to_string_lossy(),
                });
                (
                    method::JOB_CREATE,
                    json!({"display_name": format!("bench job {name}"), "files": [file]}),
                )
            },
            |i, v| {
                ids[i] = v["job_id"]
                    .as_str()
                    .with_context(|| format!("job.create answered without job_id: {v}"))?
                    .to_string();
                Ok(())
            },
        )
        .await?;
        let t_created = t0.elapsed();
        conn.pipelined(
            n,
            n,
            |i| (method::JOB_RESUME, json!({"job_id": ids[i]})),
            |_, _| Ok(()),
        )
        .await?;
        let t_resumed = t0.elapsed();
        let mut waiting: HashSet<&str> = ids.iter().map(String::as_str).collect();
        while !waiting.is_empty() {
            let ev = match tokio::time::timeout(STALL_TIMEOUT, conn.next_event()).await {
                Ok(ev) => ev?,
                Err(_) => bail!(
                    "no event for {STALL_TIMEOUT:?} with {} of {n} jobs not transferred; \
                     ferryd's log ends:\n{}",
                    waiting.len(),
                    daemon.log_tail()
                ),
            };
            let Some(id) = ev["job_id"].as_str() else {
                continue;
            };
            if ev["kind"] == "state" && waiting.contains(id) {
                match ev["to"].as_str() {
                    Some("transferred") => {
                        waiting.remove(id);
                    }
                    Some("error") => {
                        let job = conn.call(method::JOB_GET, json!({"job_id": id})).await?;
                        bail!("job {id} failed: {job}");
                    }
                    _ => {}
                }
            }
        }
        let t_transferred = t0.elapsed();
        conn.pipelined(
            n,
            n,
            |i| (method::JOB_COMPLETE, json!({"job_id": ids[i]})),
            |i, v| {
                if v["state"] != "acknowledged" || v["partial"] != false {
                    bail!("job.complete of job {} answered {v}", ids[i]);
                }
                Ok(())
            },
        )
        .await?;
        let t_done = t0.elapsed();
        let cpu = procfs::cpu_seconds(pid)? - cpu0;
        conn.close();
        for i in 0..n {
            let name = setup::job_name(i);
            let src = ctx.work.www().join("m").join(&name);
            setup::check_file(&out.join(&name), &src, ctx.sizes.job_bytes as u64, run == 0)?;
        }
        let s = |d: Duration| d.as_secs_f64();
        r.total.push(s(t_done));
        r.create.push(s(t_created));
        r.resume.push(s(t_resumed - t_created));
        r.transfer.push(s(t_transferred - t_resumed));
        r.complete.push(s(t_done - t_transferred));
        r.ferryd_cpu.push(cpu);
        eprintln!(
            "transfer: jobs run {}/{}: {n} jobs in {:.3} s (create {:.3}, resume {:.3}, \
             transfer {:.3}, complete {:.3}; ferryd CPU {cpu:.3} s)",
            run + 1,
            ctx.runs,
            s(t_done),
            s(t_created),
            s(t_resumed - t_created),
            s(t_transferred - t_resumed),
            s(t_done - t_transferred),
        );
    }
    ctx.work.reset_out()?;
    Ok(r)
}

/// What an idle daemon did over a window.
#[derive(Debug, Clone)]
pub struct Idle {
    /// Unfinished jobs the daemon held.
    pub jobs: usize,
    /// Context switches of all its threads in the window (each one a wake-up).
    pub switches: u64,
    /// The threads that switched, by name, with their counts.
    pub busy_threads: Vec<(String, u64)>,
    /// Threads at the end of the window.
    pub threads: usize,
    /// Threads that exited during the window (their switches after the last 1 s sample are
    /// not counted).
    pub exited: usize,
    /// CPU time used in the window, seconds.
    pub cpu_s: f64,
    /// `VmRSS` at the end of the window, KiB.
    pub rss_kib: u64,
}

/// Lets the daemon settle for [`IDLE_SETTLE`], then watches it for [`IDLE_WINDOW_S`] seconds,
/// reading every thread's context switches once a second (reading /proc does not wake it).
pub async fn measure_idle(pid: u32, jobs: usize) -> Result<Idle> {
    tokio::time::sleep(IDLE_SETTLE).await;
    let cpu0 = procfs::cpu_seconds(pid)?;
    // Per thread: name, count at first sight (0 for a thread born in the window), last count.
    let mut seen: BTreeMap<u32, (String, u64, u64)> = procfs::thread_switches(pid)?
        .into_iter()
        .map(|(tid, t)| (tid, (t.name, t.switches, t.switches)))
        .collect();
    let mut last_tids: Vec<u32> = seen.keys().copied().collect();
    for _ in 0..IDLE_WINDOW_S {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = procfs::thread_switches(pid)?;
        for (tid, t) in &now {
            let e = seen.entry(*tid).or_insert_with(|| (t.name.clone(), 0, 0));
            e.2 = t.switches;
        }
        last_tids = now.keys().copied().collect();
    }
    let cpu_s = procfs::cpu_seconds(pid)? - cpu0;
    let rss_kib = procfs::status_kib(pid, "VmRSS")?;
    let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
    for (name, first, last) in seen.values() {
        let d = last.saturating_sub(*first);
        if d > 0 {
            *by_name.entry(name.clone()).or_default() += d;
        }
    }
    Ok(Idle {
        jobs,
        switches: by_name.values().sum(),
        busy_threads: by_name.into_iter().collect(),
        threads: last_tids.len(),
        exited: seen.keys().filter(|t| !last_tids.contains(t)).count(),
        cpu_s,
        rss_kib,
    })
}

/// A fresh daemon with no jobs, watched while idle.
pub async fn idle_empty(ctx: &Ctx<'_>) -> Result<Idle> {
    let root = ctx.work.daemon_root("idle");
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let daemon = Daemon::start(ctx.ferryd, &root).await?;
    let measured = match daemon.pid() {
        Some(pid) => measure_idle(pid, 0).await,
        None => Err(anyhow::anyhow!("ferryd is not running")),
    };
    let stopped = daemon.stop().await;
    let m = measured?;
    stopped?;
    Ok(m)
}

/// The large queue: creation and restarts.
#[derive(Debug, Clone)]
pub struct Restart {
    /// Jobs created.
    pub jobs: usize,
    /// First `job.create` sent → last answered, seconds.
    pub create_s: f64,
    /// Jobs per second over each of [`CREATE_SLICES`] equal slices of the creation.
    pub slice_rates: Samples,
    /// `VmRSS` after creating them, KiB.
    pub rss_after_create_kib: u64,
    /// SIGTERM → exit, seconds, per restart.
    pub stop: Samples,
    /// Spawn → "ferryd is ready" logged, seconds.
    pub ready: Samples,
    /// Spawn → first `job.list {limit: 10}` answered (connect and `ferry.hello` included).
    pub answered: Samples,
    /// `VmRSS` right after that answer, KiB.
    pub rss_after_restart_kib: Samples,
    /// The restarted daemon idle, when measured.
    pub idle: Option<Idle>,
}

impl Restart {
    /// Jobs per second over the whole creation.
    pub fn rate(&self) -> f64 {
        if self.create_s > 0.0 {
            self.jobs as f64 / self.create_s
        } else {
            0.0
        }
    }
}

/// Creates `n` suspended jobs (one file each, never fetched) with pipelined `job.create` on
/// one connection, then `ctx.runs` times: SIGTERM, restart on the same state dir, time until
/// `job.list {limit: 10}` is answered; optionally watches the last daemon idle.
pub async fn restart(ctx: &Ctx<'_>, n: usize, idle: bool) -> Result<Restart> {
    let root = ctx.work.daemon_root("restart");
    let dest = ctx.work.root().join("r");
    for d in [&root, &dest] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut daemon = Daemon::start_with(ctx.ferryd, &root, &RESTART_FLAGS).await?;
    let created = create_queue(ctx, &daemon, n, &dest).await;
    let (create_s, slice_rates, rss_after_create_kib) = match created {
        Ok(c) => c,
        Err(e) => {
            let _ = daemon.stop().await;
            return Err(e);
        }
    };
    let mut r = Restart {
        jobs: n,
        create_s,
        slice_rates,
        rss_after_create_kib,
        stop: Samples::default(),
        ready: Samples::default(),
        answered: Samples::default(),
        rss_after_restart_kib: Samples::default(),
        idle: None,
    };
    for run in 0..ctx.runs {
        let t = Instant::now();
        daemon
            .stop()
            .await
            .context("stopping the daemon with the large queue")?;
        let stop = t.elapsed().as_secs_f64();
        let t0 = Instant::now();
        daemon = Daemon::start_with(ctx.ferryd, &root, &RESTART_FLAGS).await?;
        let ready = t0.elapsed().as_secs_f64();
        let answer = first_list(&daemon).await;
        let answered = t0.elapsed().as_secs_f64();
        if let Err(e) = answer {
            let _ = daemon.stop().await;
            return Err(e);
        }
        let pid = daemon.pid().context("ferryd is not running")?;
        let rss = procfs::status_kib(pid, "VmRSS")?;
        r.stop.push(stop);
        r.ready.push(ready);
        r.answered.push(answered);
        r.rss_after_restart_kib.push(rss as f64);
        eprintln!(
            "transfer: restart run {}/{} with {n} jobs: stop {stop:.3} s, ready {ready:.3} s, \
             job.list answered {answered:.3} s after spawn, RSS {:.1} MiB",
            run + 1,
            ctx.runs,
            rss as f64 / 1024.0
        );
    }
    if idle {
        let measured = match daemon.pid() {
            Some(pid) => measure_idle(pid, n).await,
            None => Err(anyhow::anyhow!("ferryd is not running")),
        };
        match measured {
            Ok(i) => r.idle = Some(i),
            Err(e) => {
                let _ = daemon.stop().await;
                return Err(e);
            }
        }
    }
    daemon.stop().await?;
    Ok(r)
}

/// Connects, says hello and asks for the first 10 jobs; they must be there.
async fn first_list(daemon: &Daemon) -> Result<()> {
    let conn = Conn::open(daemon.socket()).await?;
    let v = conn.call(method::JOB_LIST, json!({"limit": 10})).await?;
    conn.close();
    let got = v["jobs"].as_array().map_or(0, Vec::len);
    if got != 10 {
        bail!("job.list {{limit: 10}} after the restart listed {got} jobs");
    }
    Ok(())
}

/// Creates the queue; returns the time taken, the per-slice rates and the RSS afterwards.
async fn create_queue(
    ctx: &Ctx<'_>,
    daemon: &Daemon,
    n: usize,
    dest: &Path,
) -> Result<(f64, Samples, u64)> {
    let pid = daemon.pid().context("ferryd is not running")?;
    let conn = Conn::open(daemon.socket()).await?;
    let url = format!("{}/s/{}", ctx.base_url, setup::small_name(0));
    let slice = n.div_ceil(CREATE_SLICES).max(1);
    let mut marks: HashMap<usize, Instant> = HashMap::new();
    let mut answered = 0usize;
    eprintln!("transfer: creating {n} suspended jobs ({CREATE_WINDOW} requests in flight) …");
    let t0 = Instant::now();
    conn.pipelined(
        n,
        CREATE_WINDOW,
        |i| {
            let file = json!({
                "remote_url": url,
                "local_path": dest.join(i.to_string()).to_string_lossy(),
            });
            (
                method::JOB_CREATE,
                json!({"display_name": format!("q{i}"), "files": [file]}),
            )
        },
        |_, v| {
            if v["job_id"].as_str().is_none() {
                bail!("job.create answered without job_id: {v}");
            }
            answered += 1;
            if answered.is_multiple_of(slice) || answered == n {
                marks.insert(answered, Instant::now());
            }
            Ok(())
        },
    )
    .await
    .with_context(|| format!("ferryd's log ends:\n{}", daemon.log_tail()))?;
    let create_s = t0.elapsed().as_secs_f64();
    conn.close();
    let mut rates = Samples::default();
    let mut prev = (0usize, t0);
    let mut keys: Vec<usize> = marks.keys().copied().collect();
    keys.sort_unstable();
    for k in keys {
        let at = marks[&k];
        let secs = (at - prev.1).as_secs_f64();
        if secs > 0.0 {
            rates.push((k - prev.0) as f64 / secs);
        }
        prev = (k, at);
    }
    let rss = procfs::status_kib(pid, "VmRSS")?;
    eprintln!(
        "transfer: created {n} jobs in {create_s:.3} s ({:.0} jobs/s), RSS {:.1} MiB",
        n as f64 / create_s.max(f64::MIN_POSITIVE),
        rss as f64 / 1024.0
    );
    Ok((create_s, rates, rss))
}
