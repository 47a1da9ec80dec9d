//! The head-to-head runs: one big file, and many small files in one job, fetched by ferry and
//! by each peer from the same nginx into the same directory, round-robin, outputs deleted
//! between runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::conn::{Conn, Cursor};
use super::procfs;
use super::setup::{self, BIG, Sizes, Work};
use super::timing::{Cmd, Samples, Timed};
use crate::daemon::Daemon;

/// The aria2c flags every aria2c run gets (single connection per file, no preallocation, no
/// hash check, quiet).
pub const ARIA2_FLAGS: [&str; 5] = [
    "-x1",
    "-s1",
    "--file-allocation=none",
    "--check-integrity=false",
    "--console-log-level=warn",
];

/// The one failure of `ferry transfer` that is recorded rather than fatal: the CLI's last
/// step, reading the job's files to print them, failing after the job was completed. The run
/// counts (its files are checked like any other) and the report says it failed.
pub const TOLERATED_FAILURE: &str = "cannot read the files of job";

/// A tool in a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `ferry transfer` against the bench's `ferryd`.
    Ferry,
    /// `curl -o` (one file).
    Curl,
    /// `curl --parallel --parallel-max 16` with a config file (many files).
    CurlParallel,
    /// `wget -O` (one file) or `wget -i` (many).
    Wget,
    /// `aria2c` (one file) or `aria2c -i -j 16` (many).
    Aria2,
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `ferry` CLI.
    pub ferry: PathBuf,
    /// curl.
    pub curl: PathBuf,
    /// wget.
    pub wget: PathBuf,
    /// aria2c.
    pub aria2c: PathBuf,
}

/// What the runs have in common.
pub struct Ctx<'a> {
    /// The benchmark's directory.
    pub work: &'a Work,
    /// The programs.
    pub programs: &'a Programs,
    /// The `ferryd` binary.
    pub ferryd: &'a Path,
    /// nginx's `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Sizes and counts.
    pub sizes: Sizes,
    /// Runs per tool.
    pub runs: usize,
}

/// Where one `ferry transfer` spent its time, from the daemon's event log (seconds).
#[derive(Debug, Clone, Default)]
pub struct Phases {
    /// Process start → job created (CLI start-up, reading the list, connect, `job.create`).
    pub to_created: Samples,
    /// Created → leaves `suspended` (`events.follow`, `job.resume`).
    pub to_resumed: Samples,
    /// Resumed → `transferred` (scheduling, fetching, making the bytes durable).
    pub to_transferred: Samples,
    /// … of which the time after the job's last `progress` event.
    pub after_last_progress: Samples,
    /// Transferred → `acknowledged` (`job.complete`: handing the files over).
    pub to_acknowledged: Samples,
    /// Acknowledged → process exit (`job.files`, printing, exit).
    pub to_exit: Samples,
}

/// One tool's runs in a comparison.
#[derive(Debug, Clone)]
pub struct ToolRuns {
    /// Which tool.
    pub tool: Tool,
    /// Its command line, with `$WORK` for the benchmark's directory.
    pub command: String,
    /// Wall time of each run, seconds.
    pub secs: Samples,
    /// CPU time of the process itself, seconds.
    pub cpu: Samples,
    /// ferry only: `ferryd`'s CPU time during the run.
    pub ferryd_cpu: Samples,
    /// ferry only: `ferryd`'s peak RSS during the run, KiB.
    pub ferryd_peak_kib: Samples,
    /// ferry only: where the time went.
    pub phases: Phases,
    /// ferry only: runs that exited with a failure although every file was delivered and the
    /// job acknowledged (see [`TOLERATED_FAILURE`]), with what the CLI said.
    pub failures: Vec<String>,
    /// ferry only, after such a failure: the length of the daemon's `job.files` answer line.
    pub files_answer_bytes: Option<usize>,
}

/// The result of one comparison: ferry first, then the peers.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// Per tool, in the order given.
    pub tools: Vec<ToolRuns>,
    /// Whether resetting ferryd's peak RSS before each run worked (else the peak is since the
    /// daemon started).
    pub peak_reset: bool,
}

impl Comparison {
    /// The runs of `tool`.
    pub fn get(&self, tool: Tool) -> Option<&ToolRuns> {
        self.tools.iter().find(|t| t.tool == tool)
    }
}

/// `ferry --socket S --no-autostart transfer …`.
fn ferry_cmd(ctx: &Ctx<'_>, daemon: &Daemon) -> Cmd {
    Cmd::new(&ctx.programs.ferry)
        .arg("--socket")
        .arg(daemon.socket())
        .arg("--no-autostart")
        .arg("transfer")
}

/// One file of [`Sizes::big_bytes`]: ferry, curl, wget, aria2c.
pub async fn big(ctx: &Ctx<'_>) -> Result<Comparison> {
    let url = format!("{}/{BIG}", ctx.base_url);
    let src = ctx.work.www().join(BIG);
    let len = ctx.sizes.big_bytes;
    let command = |tool: Tool, daemon: &Daemon, out: &Path| -> Cmd {
        let dest = out.join(BIG);
        match tool {
            Tool::Ferry => ferry_cmd(ctx, daemon).arg(&url).arg(&dest),
            Tool::Curl | Tool::CurlParallel => Cmd::new(&ctx.programs.curl)
                .args(["-sS", "--fail", "-o"])
                .arg(&dest)
                .arg(&url),
            Tool::Wget => Cmd::new(&ctx.programs.wget)
                .args(["-q", "-O"])
                .arg(&dest)
                .arg(&url),
            Tool::Aria2 => Cmd::new(&ctx.programs.aria2c)
                .args(ARIA2_FLAGS)
                .arg("-d")
                .arg(out)
                .args(["-o", BIG])
                .arg(&url),
        }
    };
    let verify = |_: Tool, out: &Path, first: bool| -> Result<()> {
        // The content is compared on each tool's first run, the size on every run.
        setup::check_file(&out.join(BIG), &src, len, first)?;
        only_entries(out, 1)
    };
    compare(
        ctx,
        "big",
        &[Tool::Ferry, Tool::Curl, Tool::Wget, Tool::Aria2],
        command,
        verify,
    )
    .await
}

/// [`Sizes::small_files`] files of [`Sizes::small_bytes`] in one go: ferry (one job), aria2c,
/// wget (one process), curl --parallel.
pub async fn small(ctx: &Ctx<'_>) -> Result<Comparison> {
    let n = ctx.sizes.small_files;
    let out = ctx.work.out();
    let lists = ctx.work.lists();
    let urls: Vec<String> = (0..n)
        .map(|i| format!("{}/s/{}", ctx.base_url, setup::small_name(i)))
        .collect();
    let names: Vec<String> = (0..n).map(setup::small_name).collect();
    // ferry: `URL PATH` lines; aria2c and wget: URLs (saved under their last segment);
    // curl: `url`/`output` pairs. Every tool writes the same paths under the output directory.
    let mut ferry_list = String::new();
    let mut url_list = String::new();
    let mut curl_cfg = String::new();
    for (url, name) in urls.iter().zip(&names) {
        let dest = out.join(name);
        ferry_list.push_str(&format!("{url} {}\n", dest.display()));
        url_list.push_str(&format!("{url}\n"));
        curl_cfg.push_str(&format!(
            "url = \"{url}\"\noutput = \"{}\"\n",
            dest.display()
        ));
    }
    let (ferry_path, urls_path, curl_path) = (
        lists.join("ferry.list"),
        lists.join("urls.list"),
        lists.join("curl.cfg"),
    );
    for (p, text) in [
        (&ferry_path, &ferry_list),
        (&urls_path, &url_list),
        (&curl_path, &curl_cfg),
    ] {
        std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    let command = |tool: Tool, daemon: &Daemon, out: &Path| -> Cmd {
        match tool {
            Tool::Ferry => ferry_cmd(ctx, daemon).arg("--from-file").arg(&ferry_path),
            Tool::Aria2 => Cmd::new(&ctx.programs.aria2c)
                .arg("-i")
                .arg(&urls_path)
                .args(["-j", "16"])
                .args(ARIA2_FLAGS)
                .arg("-d")
                .arg(out),
            Tool::Wget => Cmd::new(&ctx.programs.wget)
                .args(["-q", "-i"])
                .arg(&urls_path)
                .arg("-P")
                .arg(out),
            Tool::Curl | Tool::CurlParallel => Cmd::new(&ctx.programs.curl)
                .args(["-sS", "--fail", "--parallel", "--parallel-max", "16", "-K"])
                .arg(&curl_path),
        }
    };
    let www = ctx.work.www().join("s");
    let len = ctx.sizes.small_bytes as u64;
    let verify = |_: Tool, out: &Path, first: bool| -> Result<()> {
        for name in &names {
            setup::check_file(&out.join(name), &www.join(name), len, first)?;
        }
        only_entries(out, n)
    };
    compare(
        ctx,
        "small",
        &[Tool::Ferry, Tool::Aria2, Tool::Wget, Tool::CurlParallel],
        command,
        verify,
    )
    .await
}

/// Fails when `dir` holds anything besides the `n` expected files (a leftover staging or
/// control file would be work a tool did not finish).
fn only_entries(dir: &Path, n: usize) -> Result<()> {
    let count = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .count();
    if count != n {
        bail!("{} holds {count} entries, expected {n}", dir.display());
    }
    Ok(())
}

/// Runs each tool `ctx.runs` times, round-robin (run r starts with tool r mod k, so drift on
/// the machine spreads over all tools), against a fresh `ferryd` under `name`.
async fn compare(
    ctx: &Ctx<'_>,
    name: &str,
    tools: &[Tool],
    command: impl Fn(Tool, &Daemon, &Path) -> Cmd,
    verify: impl Fn(Tool, &Path, bool) -> Result<()>,
) -> Result<Comparison> {
    let root = ctx.work.daemon_root(name);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let daemon = Daemon::start(ctx.ferryd, &root).await?;
    let measured = compare_with(ctx, name, tools, &daemon, command, verify).await;
    let stopped = daemon.stop().await;
    let m = measured?;
    stopped?;
    Ok(m)
}

/// [`compare`] once the daemon runs.
async fn compare_with(
    ctx: &Ctx<'_>,
    name: &str,
    tools: &[Tool],
    daemon: &Daemon,
    command: impl Fn(Tool, &Daemon, &Path) -> Cmd,
    verify: impl Fn(Tool, &Path, bool) -> Result<()>,
) -> Result<Comparison> {
    let pid = daemon.pid().context("ferryd is not running")?;
    let conn = Conn::open(daemon.socket()).await?;
    let mut cursor = Cursor::at_end(&conn).await?;
    let mut peak_reset = true;
    let mut results: Vec<ToolRuns> = tools
        .iter()
        .map(|&tool| ToolRuns {
            tool,
            command: command(tool, daemon, &ctx.work.out()).display(ctx.work.root()),
            secs: Samples::default(),
            cpu: Samples::default(),
            ferryd_cpu: Samples::default(),
            ferryd_peak_kib: Samples::default(),
            phases: Phases::default(),
            failures: Vec::new(),
            files_answer_bytes: None,
        })
        .collect();
    for run in 0..ctx.runs {
        for k in 0..tools.len() {
            let slot = (k + run) % tools.len();
            let tool = tools[slot];
            let out = ctx.work.reset_out()?;
            let cmd = command(tool, daemon, &out);
            let ferry = tool == Tool::Ferry;
            let mut cpu0 = 0.0;
            if ferry {
                // Skips whatever the daemon logged since the last run.
                cursor.read(&conn).await?;
                if let Err(e) = procfs::reset_peak_rss(pid) {
                    if peak_reset {
                        eprintln!("transfer: {e:#}; ferryd's peak RSS will be since its start");
                    }
                    peak_reset = false;
                }
                cpu0 = procfs::cpu_seconds(pid)?;
            }
            let timed = cmd
                .run_timed(ctx.work.root())
                .await
                .with_context(|| format!("{name}, run {}", run + 1))?;
            let tolerated = ferry && timed.failure.contains(TOLERATED_FAILURE);
            if !timed.success && !tolerated {
                let mut msg = format!("{name}, run {}: {}", run + 1, timed.failure);
                if ferry {
                    msg.push_str(&format!("\nferryd's log ends:\n{}", daemon.log_tail()));
                }
                bail!(msg);
            }
            let r = &mut results[slot];
            r.secs.push(timed.secs);
            r.cpu.push(timed.cpu_s);
            let mut extra = String::new();
            if ferry {
                let cpu = procfs::cpu_seconds(pid)? - cpu0;
                let peak = procfs::status_kib(pid, "VmHWM")?;
                r.ferryd_cpu.push(cpu);
                r.ferryd_peak_kib.push(peak as f64);
                let events = cursor.read(&conn).await?;
                // Also the check that the job got to `acknowledged`.
                let (job_id, p) = phases(&events, &timed).with_context(|| {
                    format!(
                        "{name}, run {}: the job's events after `{}`",
                        run + 1,
                        r.command
                    )
                })?;
                for (s, v) in [
                    (&mut r.phases.to_created, p[0]),
                    (&mut r.phases.to_resumed, p[1]),
                    (&mut r.phases.to_transferred, p[2]),
                    (&mut r.phases.to_acknowledged, p[3]),
                    (&mut r.phases.to_exit, p[4]),
                    (&mut r.phases.after_last_progress, p[5]),
                ] {
                    s.push(v);
                }
                if !timed.success {
                    let said = timed
                        .failure
                        .lines()
                        .find(|l| l.contains(TOLERATED_FAILURE))
                        .unwrap_or(TOLERATED_FAILURE)
                        .to_string();
                    eprintln!(
                        "transfer: {name} run {}: ferry failed at the end: {said}",
                        run + 1
                    );
                    r.failures.push(said);
                    if r.files_answer_bytes.is_none() {
                        r.files_answer_bytes =
                            Some(files_answer_len(daemon.socket(), &job_id).await?);
                    }
                }
                extra = format!(
                    ", ferryd CPU {cpu:.3} s, peak RSS {:.1} MiB; phases {:.3}/{:.3}/{:.3}/{:.3}/{:.3} s",
                    peak as f64 / 1024.0,
                    p[0],
                    p[1],
                    p[2],
                    p[3],
                    p[4]
                );
            }
            verify(tool, &out, run == 0).with_context(|| {
                format!("{name}, run {}: `{}` left wrong output", run + 1, r.command)
            })?;
            eprintln!(
                "transfer: {name} run {}/{}: {:<40} {:8.3} s (CPU {:.3} s{extra})",
                run + 1,
                ctx.runs,
                label(tool, name),
                timed.secs,
                timed.cpu_s,
            );
        }
    }
    conn.close();
    ctx.work.reset_out()?;
    Ok(Comparison {
        tools: results,
        peak_reset,
    })
}

/// A short name of a tool in a comparison.
pub fn label(tool: Tool, comparison: &str) -> &'static str {
    let many = comparison != "big";
    match (tool, many) {
        (Tool::Ferry, false) => "ferry transfer URL DEST",
        (Tool::Ferry, true) => "ferry transfer --from-file (one job)",
        (Tool::Curl | Tool::CurlParallel, false) => "curl -o",
        (Tool::Curl | Tool::CurlParallel, true) => "curl --parallel --parallel-max 16",
        (Tool::Wget, false) => "wget -O",
        (Tool::Wget, true) => "wget -i (one process)",
        (Tool::Aria2, false) => "aria2c -x1 -s1",
        (Tool::Aria2, true) => "aria2c -i -j 16",
    }
}

/// The length in bytes of the line `ferryd` answers `job.files` with for `job_id` (read raw,
/// without ferry-rpc's line limit).
async fn files_answer_len(socket: &Path, job_id: &str) -> Result<usize> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    let (r, mut w) = stream.into_split();
    let request = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "job.files", "params": {"job_id": job_id}});
    let lines = format!(
        "{}\n{request}\n",
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ferry.hello", "params": {}})
    );
    w.write_all(lines.as_bytes())
        .await
        .context("cannot send job.files")?;
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .await
            .context("cannot read the answer to job.files")?
            == 0
        {
            bail!("the daemon closed the connection without answering job.files");
        }
        let v: Value = serde_json::from_slice(&line).context("an answer that is not JSON")?;
        if v["id"] == 2 {
            return Ok(line.len());
        }
    }
}

/// Splits a `ferry transfer` run at the job's `created`, first state change out of
/// `suspended`, `transferred` and `acknowledged` events: five spans in seconds that add up to
/// the run's time, then the time from the job's last `progress` event to `transferred` (part
/// of the third span). Returns the job id too.
fn phases(events: &[Value], timed: &Timed) -> Result<(String, [f64; 6])> {
    let created: Vec<&Value> = events.iter().filter(|e| e["kind"] == "created").collect();
    let [job] = created.as_slice() else {
        bail!(
            "expected one created job in the event log during the run, found {}",
            created.len()
        );
    };
    let job_id = job["job_id"]
        .as_str()
        .with_context(|| format!("a created event without job_id: {job}"))?;
    let time = |e: &Value| -> Result<OffsetDateTime> {
        let t = e["time"]
            .as_str()
            .with_context(|| format!("an event without time: {e}"))?;
        OffsetDateTime::parse(t, &Rfc3339)
            .with_context(|| format!("an event time that is not RFC 3339: {e}"))
    };
    let find = |pred: &dyn Fn(&Value) -> bool, what: &str| -> Result<OffsetDateTime> {
        let e = events
            .iter()
            .find(|e| e["job_id"] == job_id && pred(e))
            .with_context(|| format!("no {what} event for job {job_id}"))?;
        time(e)
    };
    let state = |e: &Value, key: &str, v: &str| e["kind"] == "state" && e[key] == v;
    let created = find(&|e| e["kind"] == "created", "created")?;
    let resumed = find(&|e| state(e, "from", "suspended"), "resume")?;
    let transferred = find(&|e| state(e, "to", "transferred"), "transferred")?;
    let acked = find(&|e| state(e, "to", "acknowledged"), "acknowledged")?;
    let last_progress = events
        .iter()
        .rev()
        .find(|e| e["job_id"] == job_id && e["kind"] == "progress")
        .map(time)
        .transpose()?
        .unwrap_or(resumed);
    let s = |a: OffsetDateTime, b: OffsetDateTime| (b - a).as_seconds_f64();
    Ok((
        job_id.to_string(),
        [
            s(timed.started, created),
            s(created, resumed),
            s(resumed, transferred),
            s(transferred, acked),
            s(acked, timed.ended),
            s(last_progress, transferred),
        ],
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn phases_from_the_event_log() {
        let t = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
        let timed = Timed {
            secs: 10.0,
            cpu_s: 0.0,
            started: t("2026-01-01T00:00:00Z"),
            ended: t("2026-01-01T00:00:10Z"),
            success: true,
            failure: String::new(),
        };
        let events = vec![
            json!({"kind": "created", "job_id": "j", "time": "2026-01-01T00:00:01Z"}),
            json!({"kind": "state", "job_id": "j", "from": "suspended", "to": "queued", "time": "2026-01-01T00:00:01.5Z"}),
            json!({"kind": "state", "job_id": "j", "from": "queued", "to": "transferring", "time": "2026-01-01T00:00:02Z"}),
            json!({"kind": "progress", "job_id": "j", "time": "2026-01-01T00:00:07Z"}),
            json!({"kind": "progress", "job_id": "j", "time": "2026-01-01T00:00:07.75Z"}),
            json!({"kind": "state", "job_id": "j", "from": "transferring", "to": "transferred", "time": "2026-01-01T00:00:08Z"}),
            json!({"kind": "state", "job_id": "j", "from": "transferred", "to": "acknowledged", "time": "2026-01-01T00:00:09Z"}),
        ];
        let (id, p) = phases(&events, &timed).unwrap();
        assert_eq!(id, "j");
        assert_eq!(p, [1.0, 0.5, 6.5, 1.0, 1.0, 0.25]);
        assert!(phases(&events[1..], &timed).is_err());
    }
}
