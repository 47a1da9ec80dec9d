//! The report section: the summary against the targets, then the detail of every part.

use super::Results;
use super::Setup;
use super::files::{ARIA2_FLAGS, Comparison, Tool, ToolRuns, label};
use super::jobs::{CREATE_SLICES, CREATE_WINDOW, IDLE_SETTLE, IDLE_WINDOW_S, Idle, RESTART_FLAGS};
use super::timing::Samples;

/// 1.05× curl's time for the big file.
const BIG_VS_CURL: f64 = 1.05;
/// 0.5× aria2c's time for the small files.
const SMALL_VS_ARIA2: f64 = 0.5;
/// ferryd's peak RSS during the small-files run, MiB.
const SMALL_PEAK_MIB: f64 = 64.0;
/// Restart with the large queue, seconds.
const RESTART_S: f64 = 1.0;
/// Job creation, jobs per second.
const CREATE_RATE: f64 = 5000.0;
/// Idle RSS, MiB.
const IDLE_RSS_MIB: f64 = 20.0;

/// `n` with thin spaces between thousands (`10 000`).
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A size in the largest binary unit that divides it.
pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// `median (min–max)` with `d` decimals and a unit.
pub(crate) fn spread(s: &Samples, d: usize, unit: &str) -> String {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    format!("{:.d$}{unit} ({:.d$}–{:.d$})", s.median(), s.min(), s.max())
}

/// KiB samples in MiB (keeping only what the report shows: min, median and max).
fn mib(s: &Samples) -> Samples {
    let mut m = Samples::default();
    for v in [s.min(), s.median(), s.max()] {
        m.push(v / 1024.0);
    }
    m
}

/// The verdict cell.
pub(crate) fn verdict(met: bool, how: String) -> String {
    if met {
        format!("met ({how})")
    } else {
        format!("**missed** ({how})")
    }
}

/// One summary row: ferry's time against a peer's, with an optional target on the ratio.
fn ratio_row(
    what: &str,
    ferry: &ToolRuns,
    peer: &ToolRuns,
    peer_label: &str,
    target: Option<(f64, &str)>,
) -> String {
    let ratio = ferry.secs.median() / peer.secs.median().max(f64::MIN_POSITIVE);
    let mark = if ferry.failures.is_empty() {
        ""
    } else {
        " †"
    };
    let (target_cell, verdict_cell) = match target {
        Some((limit, text)) => (
            text.to_string(),
            verdict(ratio <= limit, format!("{ratio:.2}× vs ≤ {limit}×")),
        ),
        None => ("—".to_string(), "—".to_string()),
    };
    format!(
        "| {what} vs `{peer_label}` | {}{mark} | {} | {ratio:.2}× | {target_cell} | {verdict_cell} |\n",
        spread(&ferry.secs, 3, "s"),
        spread(&peer.secs, 3, "s"),
    )
}

/// The section's Markdown.
pub fn render(r: &Results, s: &Setup) -> String {
    let mut md = String::new();
    let big = size(s.sizes.big_bytes);
    let nsmall = thousands(s.sizes.small_files as u64);
    let small = size(s.sizes.small_bytes as u64);
    let nqueue = thousands(s.queue_jobs as u64);
    md.push_str(&format!(
        "What is measured: wall time from spawning each tool to its exit, {runs} runs per tool, \
         round-robin (run r starts with the r-th tool), reported as median (min–max). Every tool \
         downloads from the same local nginx on 127.0.0.1 (generated config: `daemon off;`, \
         `worker_processes 2`, `sendfile on`, `keepalive_requests 100000`, `access_log off`) and \
         writes into the same directory under the temp dir ({fs}); outputs are removed (many \
         small ones are moved aside instead, since ext4 slows down allocating inodes right \
         after freeing thousands) and the file system synced (`syncfs`, untimed) before every \
         run, and the content of each \
         tool's first run is compared byte for byte with the source (sizes on every run). \
         ferry is the real CLI (`{ferry}`) with `--socket` and `--no-autostart`, talking to a \
         `{ferryd}` the benchmark started (defaults, `--retry-delay-floor 1`; its state dir in \
         the same temp dir); its time includes creating the job, waiting for it and \
         `job.complete` (the files are at their destinations when it exits), as a peer's \
         includes writing its files. Nothing is dropped or adjusted.\n\n",
        runs = s.runs,
        fs = s.fs,
        ferry = s.ferry,
        ferryd = s.ferryd,
    ));

    let loads: Vec<String> = r
        .loads
        .iter()
        .map(|(part, l)| format!("{part} {l}"))
        .collect();
    md.push_str(&format!(
        "The measurement took {:.0} s. Load average (1/5/15 min) when each part started and at \
         the end: {}.\n\n",
        r.elapsed_s,
        loads.join("; ")
    ));
    md.push_str("### Against the targets\n\n");
    md.push_str(
        "| measurement | ferry | peer | ferry/peer | target | verdict |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n",
    );
    if let Some(c) = &r.big
        && let Some(f) = c.get(Tool::Ferry)
    {
        let what = format!("{big} file");
        for (tool, target) in [
            (Tool::Curl, Some((BIG_VS_CURL, "≤ 1.05× curl's time"))),
            (Tool::Wget, None),
            (Tool::Aria2, None),
        ] {
            if let Some(p) = c.get(tool) {
                md.push_str(&ratio_row(&what, f, p, label(tool, "big"), target));
            }
        }
    }
    if let Some(c) = &r.small
        && let Some(f) = c.get(Tool::Ferry)
    {
        let what = format!("{nsmall} × {small}, one job");
        for (tool, target) in [
            (Tool::Aria2, Some((SMALL_VS_ARIA2, "≤ 0.5× aria2c's time"))),
            (Tool::CurlParallel, None),
            (Tool::Wget, None),
        ] {
            if let Some(p) = c.get(tool) {
                let mut row = ratio_row(&what, f, p, label(tool, "small"), target);
                if tool == Tool::CurlParallel {
                    row = row.replace(
                        "| — | — |\n",
                        "| on a par (no number given) | — (see the ratio) |\n",
                    );
                }
                md.push_str(&row);
            }
        }
        let peak = mib(&f.ferryd_peak_kib);
        md.push_str(&format!(
            "| `ferryd` peak RSS (VmHWM) during the {nsmall}-file run | {:.1} MiB (max of runs; median {:.1}) | — | — | < {SMALL_PEAK_MIB:.0} MiB | {} |\n",
            peak.max(),
            peak.median(),
            verdict(peak.max() < SMALL_PEAK_MIB, format!("{:.1} MiB", peak.max())),
        ));
    }
    if let Some(j) = &r.jobs {
        md.push_str(&format!(
            "| {} jobs × {} submitted at once (create, resume, all transferred, complete) | {} | — | — | — | — |\n",
            s.sizes.jobs,
            size(s.sizes.job_bytes as u64),
            spread(&j.total, 3, "s"),
        ));
    }
    if let Some(q) = &r.restart {
        md.push_str(&format!(
            "| restart with {nqueue} suspended jobs (spawn → first `job.list {{limit: 10}}` answered) | {} | — | — | < {RESTART_S:.0} s | {} |\n",
            spread(&q.answered, 3, "s"),
            verdict(
                q.answered.median() < RESTART_S,
                format!("median {:.3} s, max {:.3} s", q.answered.median(), q.answered.max())
            ),
        ));
        md.push_str(&format!(
            "| job creation (pipelined `job.create`, one connection, {nqueue} jobs) | {} jobs/s | — | — | ≥ {} jobs/s | {} |\n",
            thousands(q.rate().round() as u64),
            thousands(CREATE_RATE as u64),
            verdict(q.rate() >= CREATE_RATE, format!("{:.0} jobs/s", q.rate())),
        ));
    }
    let idles: Vec<&Idle> = r
        .idle_empty
        .iter()
        .chain(r.restart.iter().filter_map(|q| q.idle.as_ref()))
        .collect();
    for i in &idles {
        md.push_str(&format!(
            "| idle wake-ups over {IDLE_WINDOW_S} s, {} jobs (context switches of all threads) | {} | — | — | none | {} |\n",
            thousands(i.jobs as u64),
            i.switches,
            verdict(i.switches == 0, format!("{} in {IDLE_WINDOW_S} s", i.switches)),
        ));
    }
    for i in &idles {
        let rss = i.rss_kib as f64 / 1024.0;
        md.push_str(&format!(
            "| idle RSS, {} jobs | {rss:.1} MiB | — | — | < {IDLE_RSS_MIB:.0} MiB | {} |\n",
            thousands(i.jobs as u64),
            verdict(rss < IDLE_RSS_MIB, format!("{rss:.1} MiB")),
        ));
    }
    md.push_str(
        "\nRatios are of medians. A verdict on a spread is judged on the median, except peak \
         RSS (the largest run).\n",
    );
    for (c, what) in [
        (&r.big, format!("{big} file")),
        (&r.small, format!("{nsmall}-file")),
    ] {
        if let Some(f) = c.as_ref().and_then(|c| c.get(Tool::Ferry)) {
            md.push_str(&failure_note(f, &what, s.runs));
        }
    }

    if let Some(c) = &r.big {
        md.push_str(&format!("\n### One {big} file\n\n"));
        md.push_str(&comparison_table(
            c,
            "big",
            s.sizes.big_bytes as f64 / f64::from(1 << 20),
            "MiB/s",
        ));
    }
    if let Some(c) = &r.small {
        md.push_str(&format!("\n### {nsmall} files of {small} in one go\n\n"));
        md.push_str(&comparison_table(
            c,
            "small",
            s.sizes.small_files as f64,
            "files/s",
        ));
        md.push_str(
            "\nferry's job runs with the daemon's defaults (`max_parallel_files` 8 per job, at most \
             16 connections per host); `ferry transfer` has no option to change them.\n",
        );
    }
    if r.big.is_some() || r.small.is_some() {
        md.push_str(&phases_table(r, &big, &nsmall));
    }
    if let Some(j) = &r.jobs {
        md.push_str(&format!(
            "\n### {} jobs of {} at once\n\n\
             One connection (raw ferry-rpc, like ferry-client): `events.follow`, then {} \
             `job.create` (one file each) all in flight at once, then {} `job.resume` likewise, \
             wait until the followed events show every job `transferred`, then {} `job.complete` \
             at once; all {} files are checked afterwards. One daemon with its defaults (4 \
             background jobs transfer at once) for all runs.\n\n\
             | step | median s | min–max s |\n| --- | ---: | ---: |\n",
            s.sizes.jobs,
            size(s.sizes.job_bytes as u64),
            s.sizes.jobs,
            s.sizes.jobs,
            s.sizes.jobs,
            s.sizes.jobs,
        ));
        for (name, v) in [
            ("create all", &j.create),
            ("resume all", &j.resume),
            ("until all transferred", &j.transfer),
            ("complete all", &j.complete),
            ("**total**", &j.total),
            ("`ferryd` CPU (user+system)", &j.ferryd_cpu),
        ] {
            md.push_str(&format!(
                "| {name} | {:.3} | {:.3}–{:.3} |\n",
                v.median(),
                v.min(),
                v.max()
            ));
        }
    }
    if let Some(q) = &r.restart {
        md.push_str(&format!(
            "\n### {nqueue} queued jobs: creation and restart\n\n\
             A fresh `ferryd {flags}` (state dir in the same temp dir). {nqueue} jobs, each \
             with one `http://` file that is never fetched, are created with `job.create` on one \
             connection with {CREATE_WINDOW} requests in flight; they stay suspended. Creation \
             took {:.3} s: {:.0} jobs/s overall; over {CREATE_SLICES} equal slices of it, \
             {} jobs/s (median, min–max). RSS afterwards: {:.1} MiB. Then {} times: SIGTERM, wait for the exit, \
             start `ferryd` again on the same state dir, and time from spawning it to the answer \
             of the first `job.list {{limit: 10}}` on a new connection (connect and `ferry.hello` \
             included; the benchmark connects once the daemon logs that it is ready).\n\n\
             | | median | min–max |\n| --- | ---: | ---: |\n",
            q.create_s,
            q.rate(),
            spread(&q.slice_rates, 0, ""),
            q.rss_after_create_kib as f64 / 1024.0,
            s.runs,
            flags = RESTART_FLAGS.join(" "),
        ));
        let rss = mib(&q.rss_after_restart_kib);
        for (name, v, unit) in [
            ("SIGTERM → exit", &q.stop, "s"),
            ("spawn → \"ferryd is ready\" logged", &q.ready, "s"),
            ("spawn → `job.list` answered", &q.answered, "s"),
            ("RSS after that answer", &rss, "MiB"),
        ] {
            md.push_str(&format!(
                "| {name} | {:.3} {unit} | {:.3}–{:.3} |\n",
                v.median(),
                v.min(),
                v.max()
            ));
        }
    }
    if !idles.is_empty() {
        md.push_str(&format!(
            "\n### Idle\n\n\
             After {} s without requests (longer than the 10 s after which Tokio's idle \
             blocking threads exit), every thread's `voluntary_ctxt_switches` + \
             `nonvoluntary_ctxt_switches` (/proc/PID/task/*/status) is read once a second for \
             {IDLE_WINDOW_S} s; each switch is a wake-up. Reading /proc does not wake the \
             daemon. One window per daemon: a fresh one with no jobs, and the restarted one with \
             the large queue (suspended jobs).\n\n\
             | jobs | wake-ups in {IDLE_WINDOW_S} s | threads that woke (switches) | threads | exited in window | CPU s | RSS MiB |\n\
             | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n",
            IDLE_SETTLE.as_secs(),
        ));
        for i in &idles {
            let busy = if i.busy_threads.is_empty() {
                "none".to_string()
            } else {
                i.busy_threads
                    .iter()
                    .map(|(n, c)| format!("`{n}` {c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            md.push_str(&format!(
                "| {} | {} | {busy} | {} | {} | {:.2} | {:.1} |\n",
                thousands(i.jobs as u64),
                i.switches,
                i.threads,
                i.exited,
                i.cpu_s,
                i.rss_kib as f64 / 1024.0,
            ));
        }
    }

    md.push_str("\n### Commands and versions\n\n");
    for c in [&r.big, &r.small].into_iter().flatten() {
        for t in &c.tools {
            md.push_str(&format!("- `{}`\n", t.command));
        }
    }
    md.push_str(&format!(
        "\n`$WORK` is the benchmark's directory ({}); the lists hold absolute paths under it. \
         aria2c always gets `{}`.",
        s.work.display(),
        ARIA2_FLAGS.join(" "),
    ));
    let versions: Vec<String> = s
        .versions
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    md.push_str(&format!(" Versions: {}.\n", versions.join("; ")));

    md.push_str(
        "\nReproduce (installs the peers from Debian's packages, builds, runs this and the \
         notification benchmark):\n\n\
         ```sh\n\
         scripts/bench.sh\n\
         ```\n\n\
         or, with the peers installed (`bash scripts/bench-peers.sh`):\n\n\
         ```sh\n\
         cargo build --release -p ferry -p ferryd -p ferry-bench\n\
         target/release/ferry-bench transfer\n\
         ```\n\n\
         Options: `--runs N` (default 5; at least 5 to be recorded here), `--skip \
         big,small,jobs,restart,idle` (any part left out: printed, not recorded), `--keep` \
         (leave the directory for inspection), `--ferry PATH` / `--ferryd PATH`.\n",
    );
    md
}

/// † under the summary: the runs in which `ferry transfer` exited with a failure after its job
/// was completed, and why.
fn failure_note(f: &ToolRuns, what: &str, runs: usize) -> String {
    let Some(said) = f.failures.first() else {
        return String::new();
    };
    let mut md = format!(
        "\n† **`ferry transfer` exited with status 1 in {} of {runs} runs of the {what} part**, \
         saying `{said}`. Its job had been completed before that: the daemon's log shows it \
         `acknowledged` and every file was at its destination with the right size (and, in the \
         first run, content). The failing step is the CLI's last one, `job.files` to print the \
         saved files. The time is still spawn → exit, like every run's.",
        f.failures.len(),
    );
    if let Some(n) = f.files_answer_bytes {
        md.push_str(&format!(
            " The daemon answers that `job.files` with one line of {} bytes",
            thousands(n as u64)
        ));
        if n > ferry_proto::MAX_LINE_BYTES {
            md.push_str(&format!(
                ", longer than the protocol's line limit of {} bytes (`ferry_proto::MAX_LINE_BYTES`), \
                 past which the client's ferry-rpc closes the connection",
                thousands(ferry_proto::MAX_LINE_BYTES as u64)
            ));
        }
        md.push('.');
    }
    md.push('\n');
    md
}

/// Per tool: median and spread of the time, throughput, CPU.
fn comparison_table(c: &Comparison, name: &str, amount: f64, per: &str) -> String {
    let mut md = format!(
        "| tool | median s | min–max s | {per} (median) | CPU s of the process (median) | `ferryd` CPU s (median) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for t in &c.tools {
        let med = t.secs.median();
        let daemon = if t.tool == Tool::Ferry {
            format!("{:.3}", t.ferryd_cpu.median())
        } else {
            "—".into()
        };
        md.push_str(&format!(
            "| {} | {med:.3} | {:.3}–{:.3} | {:.0} | {:.3} | {daemon} |\n",
            label(t.tool, name),
            t.secs.min(),
            t.secs.max(),
            amount / med.max(f64::MIN_POSITIVE),
            t.cpu.median(),
        ));
    }
    if !c.peak_reset {
        md.push_str(
            "\n`ferryd`'s peak RSS could not be reset before each run (`/proc/PID/clear_refs`), \
             so it is the peak since the daemon started.\n",
        );
    }
    md
}

/// Where ferry's time went, from the daemon's event log, for the big and the small run.
fn phases_table(r: &Results, big: &str, nsmall: &str) -> String {
    let cols: Vec<(String, &ToolRuns)> = [
        (format!("{big} file"), r.big.as_ref()),
        (format!("{nsmall} files"), r.small.as_ref()),
    ]
    .into_iter()
    .filter_map(|(n, c)| c.and_then(|c| c.get(Tool::Ferry)).map(|t| (n, t)))
    .collect();
    let mut md = String::from(
        "\n### Where `ferry transfer`'s time goes\n\n\
         Split at the job's events in the daemon's log (their `time`, the same wall clock as \
         the process start and exit): median (min–max) seconds.\n\n",
    );
    md.push_str("| phase |");
    for (n, _) in &cols {
        md.push_str(&format!(" {n} |"));
    }
    md.push_str("\n| --- |");
    for _ in &cols {
        md.push_str(" ---: |");
    }
    md.push('\n');
    type Pick = fn(&ToolRuns) -> Samples;
    let rows: [(&str, Pick); 10] = [
        (
            "process start → job created (CLI start, list, connect, `job.create`)",
            |t| t.phases.to_created.clone(),
        ),
        ("created → resumed (`events.follow`, `job.resume`)", |t| {
            t.phases.to_resumed.clone()
        }),
        ("resumed → transferred (fetch, bytes made durable)", |t| {
            t.phases.to_transferred.clone()
        }),
        ("… of which last `progress` event → transferred", |t| {
            t.phases.after_last_progress.clone()
        }),
        ("transferred → acknowledged (`job.complete`)", |t| {
            t.phases.to_acknowledged.clone()
        }),
        ("acknowledged → exit (`job.files`, output)", |t| {
            t.phases.to_exit.clone()
        }),
        ("**total**", |t| t.secs.clone()),
        ("`ferry` CLI CPU s (user+system)", |t| t.cpu.clone()),
        ("`ferryd` CPU s (user+system)", |t| t.ferryd_cpu.clone()),
        ("`ferryd` peak RSS, MiB", |t| mib(&t.ferryd_peak_kib)),
    ];
    for (name, pick) in rows {
        md.push_str(&format!("| {name} |"));
        for (_, t) in &cols {
            let v = pick(t);
            md.push_str(&format!(
                " {:.3} ({:.3}–{:.3}) |",
                v.median(),
                v.min(),
                v.max()
            ));
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(100_000), "100 000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1 000");
        assert_eq!(size(1 << 30), "1 GiB");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(1 << 20), "1 MiB");
        assert_eq!(size(1000), "1000 bytes");
        let mut s = Samples::default();
        s.push(1.0);
        s.push(3.0);
        s.push(2.0);
        assert_eq!(spread(&s, 1, "s"), "2.0 s (1.0–3.0)");
        assert_eq!(verdict(true, "x".into()), "met (x)");
        assert_eq!(verdict(false, "x".into()), "**missed** (x)");
    }
}
