//! One run: a fresh fleet, host 1 downloads the file alone and completes it, (with the cache on)
//! the benchmark waits until host 1 has published it, then every other host downloads it at
//! once; the origin's access log says what it served.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_proto::method;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::Mode;
use super::fleet::Fleet;
use super::origin::{OriginLog, Served};
use crate::transfer::conn::Conn;
use crate::transfer::setup::{self, Work};

/// How long a host's job may go without an event before the daemon is declared stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long host 1 may take to publish the file to its cache after `job.complete`.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);
/// How often `cache.list` is asked while waiting for the publication.
const PUBLISH_POLL: Duration = Duration::from_millis(20);

/// What every run shares.
pub struct Ctx<'a> {
    /// The benchmark's directory.
    pub work: &'a Work,
    /// The `ferryd` binary.
    pub ferryd: &'a Path,
    /// The file's URL on the origin.
    pub url: String,
    /// The file's path on the origin (what its access log names).
    pub uri: String,
    /// The file as the origin serves it, to compare the downloads with.
    pub source: PathBuf,
    /// The file's size in bytes.
    pub size: u64,
    /// Hosts in the fleet.
    pub hosts: usize,
    /// The origin's access log.
    pub origin: &'a OriginLog,
    /// Keep every daemon's directory.
    pub keep: bool,
}

/// One host's download in a run.
#[derive(Debug, Clone, Default)]
pub struct HostRun {
    /// Its own `job.resume` answered → `transferred` event, seconds.
    pub secs: f64,
    /// `bytes_from_peers` of the file.
    pub from_peers: u64,
    /// `bytes_from_origin` of the file.
    pub from_origin: u64,
    /// `bytes_served` of its cache (`cache.info`) at the end of the run: what it gave peers.
    pub served: u64,
}

/// One run.
#[derive(Debug, Clone)]
pub struct Run {
    /// 1-based run number (each number has one run per mode).
    pub number: usize,
    /// Cache off or on.
    pub mode: Mode,
    /// What the origin served for the file during the run.
    pub origin: Served,
    /// Host 1's `job.resume` sent → the last host's `transferred`, seconds.
    pub wall_s: f64,
    /// … of which host 1's resume → its `transferred`.
    pub first_s: f64,
    /// … host 1's `job.complete` answered → `cache.list` shows the file (cache on only).
    pub publish_s: Option<f64>,
    /// … hosts 2..N resumed → the last one's `transferred`.
    pub rest_s: f64,
    /// Hosts 1..=N.
    pub hosts: Vec<HostRun>,
}

/// One host's job, on its own connection (which follows the daemon's events).
struct HostJob {
    /// 1-based host number.
    number: usize,
    /// The connection.
    conn: Conn,
    /// The job's id.
    job_id: String,
}

impl HostJob {
    /// Resumes the job, waits until it is transferred, reads where its bytes came from and
    /// completes it. Returns the host's figures (without `served`) and when it was transferred.
    async fn download(&mut self) -> Result<(HostRun, Instant)> {
        let t0 = Instant::now();
        self.conn
            .call(method::JOB_RESUME, json!({"job_id": self.job_id}))
            .await?;
        let done = self.wait_transferred().await?;
        let files = self
            .conn
            .call(method::JOB_FILES, json!({"job_id": self.job_id}))
            .await?;
        let file = &files["files"][0];
        if file["transferred"] != true {
            bail!("the job is transferred but its file is not: {file}");
        }
        let field = |name: &str| file[name].as_u64().unwrap_or(0);
        let run = HostRun {
            secs: (done - t0).as_secs_f64(),
            from_peers: field("bytes_from_peers"),
            from_origin: field("bytes_from_origin"),
            served: 0,
        };
        let v = self
            .conn
            .call(method::JOB_COMPLETE, json!({"job_id": self.job_id}))
            .await?;
        if v["state"] != "acknowledged" || v["partial"] != false {
            bail!("job.complete answered {v}");
        }
        Ok((run, done))
    }

    /// Waits for the job's `transferred` state event; fails on `error`, reports transient
    /// errors as they happen.
    async fn wait_transferred(&mut self) -> Result<Instant> {
        loop {
            let ev = match tokio::time::timeout(STALL_TIMEOUT, self.conn.next_event()).await {
                Ok(ev) => ev?,
                Err(_) => bail!("no event for {STALL_TIMEOUT:?} while the job transferred"),
            };
            if ev["job_id"] != self.job_id.as_str() || ev["kind"] != "state" {
                continue;
            }
            match ev["to"].as_str() {
                Some("transferred") => return Ok(Instant::now()),
                Some("error") => {
                    let job = self.get().await;
                    bail!("the job failed: {job}");
                }
                Some("transient_error") => {
                    let job = self.get().await;
                    eprintln!(
                        "peer-cache: host {}: transient error: {}",
                        self.number, job["error"]
                    );
                }
                _ => {}
            }
        }
    }

    /// The job (`job.get`), or the error getting it, for messages.
    async fn get(&self) -> Value {
        match self
            .conn
            .call(method::JOB_GET, json!({"job_id": self.job_id}))
            .await
        {
            Ok(v) => v,
            Err(e) => json!(format!("{e:#}")),
        }
    }
}

/// Run number `run` (1-based) in `mode`; with `compare`, every download is compared byte for
/// byte with the source (else only its size is checked).
pub async fn run(ctx: &Ctx<'_>, mode: Mode, run: usize, compare: bool) -> Result<Run> {
    let out = ctx.work.reset_out()?;
    for number in 1..=ctx.hosts {
        let d = out.join(format!("h{number}"));
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let base = ctx.work.daemon_root(&format!("{}-{run}", mode.slug()));
    let offset = ctx.origin.offset()?;
    let fleet = Fleet::start(ctx.ferryd, &base, ctx.hosts, mode == Mode::On).await?;
    let measured = drive(ctx, &fleet, mode, &out).await;
    let measured = measured.map_err(|e| fleet.with_logs(e));
    let stopped = fleet.stop().await;
    let origin = ctx.origin.served_since(offset, &ctx.uri).await;
    if !ctx.keep {
        std::fs::remove_dir_all(&base)
            .with_context(|| format!("cannot remove {}", base.display()))?;
    }
    let (first_s, publish_s, rest_s, wall_s, hosts) = measured?;
    stopped?;
    for number in 1..=ctx.hosts {
        let got = out.join(format!("h{number}")).join(setup::BIG);
        setup::check_file(&got, &ctx.source, ctx.size, compare)
            .with_context(|| format!("host {number}'s download"))?;
    }
    ctx.work.reset_out()?;
    Ok(Run {
        number: run,
        mode,
        origin: origin?,
        wall_s,
        first_s,
        publish_s,
        rest_s,
        hosts,
    })
}

/// What [`drive`] measures: host 1's time, the publication wait, the other hosts' time, the
/// whole, and every host's figures.
type Driven = (f64, Option<f64>, f64, f64, Vec<HostRun>);

/// The run's sequence against a started fleet.
async fn drive(ctx: &Ctx<'_>, fleet: &Fleet, mode: Mode, out: &Path) -> Result<Driven> {
    // Every job is created (suspended) and every connection follows events before the clock
    // starts, so the time is the downloads' alone.
    let mut jobs = Vec::with_capacity(fleet.hosts.len());
    for h in &fleet.hosts {
        let conn = Conn::open(h.daemon.socket()).await?;
        conn.call(method::EVENTS_FOLLOW, json!({})).await?;
        let dest = out.join(format!("h{}", h.number)).join(setup::BIG);
        let v = conn
            .call(
                method::JOB_CREATE,
                json!({
                    "display_name": format!("peer-cache bench, host {}", h.number),
                    "files": [{"remote_url": ctx.url, "local_path": dest.to_string_lossy()}],
                }),
            )
            .await?;
        let job_id = v["job_id"]
            .as_str()
            .with_context(|| format!("job.create answered without job_id: {v}"))?
            .to_string();
        jobs.push(HostJob {
            number: h.number,
            conn,
            job_id,
        });
    }
    let mut rest = jobs.split_off(1);
    let Some(mut first) = jobs.pop() else {
        bail!("a fleet without hosts");
    };

    let t0 = Instant::now();
    let (first_run, first_done) = first.download().await.context("host 1")?;
    let first_s = (first_done - t0).as_secs_f64();
    let publish_s = match mode {
        Mode::Off => None,
        Mode::On => Some(wait_published(&first.conn, &ctx.url, ctx.size).await?),
    };

    let t_rest = Instant::now();
    let mut set = JoinSet::new();
    for mut job in rest.drain(..) {
        set.spawn(async move {
            let r = job
                .download()
                .await
                .with_context(|| format!("host {}", job.number));
            (job, r)
        });
    }
    let mut runs = vec![HostRun::default(); fleet.hosts.len()];
    runs[0] = first_run;
    let mut last = first_done;
    let mut done_jobs = vec![first];
    while let Some(joined) = set.join_next().await {
        let (job, r) = joined.context("a host's download task failed")?;
        let (host_run, at) = r?;
        last = last.max(at);
        runs[job.number - 1] = host_run;
        done_jobs.push(job);
    }
    let rest_s = (last - t_rest).as_secs_f64();
    let wall_s = (last - t0).as_secs_f64();

    for job in &done_jobs {
        if mode == Mode::On {
            let info = job
                .conn
                .call(method::CACHE_INFO, json!({}))
                .await
                .with_context(|| format!("host {}", job.number))?;
            let run = &mut runs[job.number - 1];
            run.served = info["bytes_served"].as_u64().unwrap_or(0);
            if job.number > 1 && run.from_origin > 0 {
                explain_origin(job, fleet, run.from_origin).await;
            }
        }
        job.conn.close();
    }
    Ok((first_s, publish_s, rest_s, wall_s, runs))
}

/// Says on stderr why a host that could have fetched from its peers went to the origin, as far
/// as its `peers.list` and its log tell.
async fn explain_origin(job: &HostJob, fleet: &Fleet, from_origin: u64) {
    let peers = match job.conn.call(method::PEERS_LIST, json!({})).await {
        Ok(v) => v["peers"].to_string(),
        Err(e) => format!("({e:#})"),
    };
    let log = fleet
        .hosts
        .iter()
        .find(|h| h.number == job.number)
        .map(|h| h.daemon.log_tail())
        .unwrap_or_default();
    let log: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("peer") || l.contains("WARN") || l.contains("ERROR"))
        .collect();
    eprintln!(
        "peer-cache: host {} fetched {from_origin} bytes from the origin with the cache on; its \
         peers.list: {peers}; its log about peers:\n{}",
        job.number,
        log.join("\n")
    );
}

/// Polls `cache.list` until it holds an entry for `url` of `size` bytes; returns how long that
/// took.
async fn wait_published(conn: &Conn, url: &str, size: u64) -> Result<f64> {
    let t0 = Instant::now();
    loop {
        let list = conn.call(method::CACHE_LIST, json!({})).await?;
        let published = list["entries"].as_array().is_some_and(|entries| {
            entries
                .iter()
                .any(|e| e["url"] == url && e["size"].as_u64() == Some(size))
        });
        if published {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > PUBLISH_TIMEOUT {
            bail!(
                "host 1 did not publish {url} within {PUBLISH_TIMEOUT:?} of job.complete; \
                 cache.list says {list}"
            );
        }
        tokio::time::sleep(PUBLISH_POLL).await;
    }
}
