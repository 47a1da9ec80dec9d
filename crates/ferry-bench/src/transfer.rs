//! `ferry-bench transfer`: ferry against curl, wget and aria2c on one local nginx, and the
//! daemon's own figures (many jobs at once, job creation rate, restart with a large queue,
//! idleness), each against its target in docs/BENCHMARKS.md.
//!
//! Everything runs in one invocation against the same nginx (a generated config, started as
//! a child and stopped at the end) and with all files in one directory under the temp dir, so
//! every tool reads from the same server and writes to the same file system. ferry is the real
//! `ferry` CLI talking to a `ferryd` the benchmark starts; its time, like a peer's, runs from
//! spawning the process to its exit, so it includes creating the job and completing it (the
//! files are at their destinations when it exits), and a peer's includes writing its files.
//!
//! Parts (each can be skipped with `--skip`):
//! - `big`: one file of 1 GiB ([`files::big`]);
//! - `small`: 10 000 files of 4 KiB in one go ([`files::small`]), with `ferryd`'s peak RSS;
//! - `jobs`: 100 jobs of 1 MiB submitted at once ([`jobs::many`]);
//! - `restart`: 100 000 suspended jobs created with pipelined `job.create`, then restarts
//!   ([`jobs::restart`]);
//! - `idle`: wake-ups and RSS of an idle daemon, with no jobs and with the large queue.
//!
//! Short paths on purpose: `ferry transfer --from-file` sends every file in one `job.create`
//! request, and a request line may hold at most 1 MiB, so 10 000 entries must stay under about
//! 100 bytes each (`/tmp/fb-XXXXXX/o/00000` and `http://127.0.0.1:PORT/s/00000` do).

pub(crate) mod conn;
mod files;
mod jobs;
pub(crate) mod nginx;
mod procfs;
pub(crate) mod render;
pub(crate) mod setup;
pub(crate) mod timing;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::report::{self, Machine};
use files::{Comparison, Programs};
use jobs::{Idle, ManyJobs, Restart};
use setup::{Sizes, Work};

/// The report section this benchmark owns.
const SECTION: &str = "transfer";
/// The runs a result needs to be recorded.
const MIN_REPORTED_RUNS: usize = 5;
/// The sizes the targets are about; the report is written only with these.
const DEFAULT_SIZES: Sizes = Sizes {
    big_bytes: 1 << 30,
    small_files: 10_000,
    small_bytes: 4096,
    jobs: 100,
    job_bytes: 1 << 20,
};
/// Jobs in the large queue the targets are about.
const DEFAULT_QUEUE: usize = 100_000;

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// One 1 GiB file: ferry, curl, wget, aria2c.
    Big,
    /// 10 000 files of 4 KiB: ferry, aria2c, wget, curl --parallel.
    Small,
    /// 100 jobs of 1 MiB at once.
    Jobs,
    /// 100 000 queued jobs: creation rate and restart time.
    Restart,
    /// An idle daemon's wake-ups and RSS.
    Idle,
}

/// `transfer` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs per tool and measurement; medians and min–max are reported (the report needs at
    /// least 5).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Leave out parts (repeatable, or comma-separated); the report is written only when
    /// nothing is left out.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PART")]
    skip: Vec<Part>,
    /// The `ferry` CLI to run [default: `ferry` next to this binary].
    #[arg(long, value_name = "PATH")]
    ferry: Option<PathBuf>,
    /// Size of the big file in MiB (the report needs 1024).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    big_mib: u64,
    /// How many small files (the report needs 10000).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..100_000))]
    small_files: u64,
    /// Jobs in the restart queue (the report needs 100000).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(10..=200_000))]
    queue_jobs: u64,
    /// Keep the benchmark's directory (content, lists, nginx config, daemon state).
    #[arg(long)]
    keep: bool,
}

/// Everything measured.
#[derive(Default)]
pub struct Results {
    /// The 1 GiB comparison.
    big: Option<Comparison>,
    /// The small-files comparison.
    small: Option<Comparison>,
    /// 100 jobs at once.
    jobs: Option<ManyJobs>,
    /// The large queue.
    restart: Option<Restart>,
    /// A fresh daemon with no jobs, idle.
    idle_empty: Option<Idle>,
    /// The 1/5/15-minute load averages when each part started, and at the end.
    loads: Vec<(&'static str, String)>,
    /// How long the whole measurement took, seconds.
    elapsed_s: f64,
}

/// The 1/5/15-minute load averages now.
pub(crate) fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// What the report says about the setup.
pub struct Setup {
    /// Sizes used.
    sizes: Sizes,
    /// Jobs in the large queue.
    queue_jobs: usize,
    /// Runs per measurement.
    runs: usize,
    /// The file system of the benchmark's directory.
    fs: report::Filesystem,
    /// The benchmark's directory.
    work: PathBuf,
    /// `ferryd`, relative to the workspace when inside it.
    ferryd: String,
    /// `ferry`, likewise.
    ferry: String,
    /// Version lines of nginx, curl, wget, aria2c.
    versions: Vec<(&'static str, String)>,
}

/// A program built next to this one (`target/<profile>/NAME`), or `explicit`.
fn sibling(name: &str, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("--{name} {}: no such file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let bin = exe
        .parent()
        .context("this executable's path has no parent directory")?
        .join(name);
    if !bin.is_file() {
        bail!(
            "no {name} next to this binary ({}); build it with `cargo build --release -p {name}` \
             (same profile as ferry-bench) or pass --{name} PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// A path relative to the workspace when inside it.
pub(crate) fn shown(p: &Path) -> String {
    p.strip_prefix(crate::workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

/// A peer program, or an error saying how to install it.
fn peer(name: &str) -> Result<PathBuf> {
    setup::find_program(name).with_context(|| {
        format!("{name} is not installed; run `bash scripts/bench-peers.sh` (Debian packages)")
    })
}

/// Runs the parts not skipped and records the results.
pub async fn run(env: &crate::Env, args: &Args) -> Result<()> {
    let machine = Machine::collect();
    let runs = usize::try_from(args.runs).context("--runs is too large")?;
    let on = |p: Part| !args.skip.contains(&p);
    let sizes = Sizes {
        big_bytes: args.big_mib << 20,
        small_files: usize::try_from(args.small_files).context("--small-files is too large")?,
        ..DEFAULT_SIZES
    };
    let queue_jobs = usize::try_from(args.queue_jobs).context("--queue-jobs is too large")?;
    let ferry = sibling("ferry", args.ferry.as_deref())?;
    let nginx_bin = peer("nginx")?;
    let programs = Programs {
        ferry: ferry.clone(),
        curl: peer("curl")?,
        wget: peer("wget")?,
        aria2c: peer("aria2c")?,
    };
    let versions = vec![
        ("nginx", setup::version_line(&nginx_bin, "-v")),
        ("curl", setup::version_line(&programs.curl, "--version")),
        ("wget", setup::version_line(&programs.wget, "--version")),
        ("aria2c", setup::version_line(&programs.aria2c, "--version")),
    ];

    let mut work = Work::create()?;
    let setup_info = Setup {
        sizes,
        queue_jobs,
        runs,
        fs: report::filesystem_of(work.root()),
        work: work.root().to_path_buf(),
        ferryd: shown(&env.ferryd),
        ferry: shown(&ferry),
        versions,
    };
    eprintln!(
        "transfer: writing the content under {} ({}) …",
        work.root().display(),
        setup_info.fs
    );
    setup::write_content(
        &work,
        &sizes,
        on(Part::Big),
        on(Part::Small),
        on(Part::Jobs),
    )?;
    let nginx = nginx::Nginx::start(&nginx_bin, &work.nginx_prefix(), &work.www(), None).await?;
    eprintln!("transfer: nginx serves {}", nginx.base_url());
    let ctx = files::Ctx {
        work: &work,
        programs: &programs,
        ferryd: &env.ferryd,
        base_url: nginx.base_url(),
        sizes,
        runs,
    };
    let measured = measure(&ctx, &on, queue_jobs).await;
    // Stopped whatever happened, so a failed run leaves no server behind.
    let stopped = nginx.stop().await;
    if args.keep {
        eprintln!("transfer: kept {}", work.keep().display());
    }
    let results = measured?;
    stopped?;

    let body = render::render(&results, &setup_info);
    println!("{body}");
    let complete = args.skip.is_empty()
        && runs >= MIN_REPORTED_RUNS
        && args.big_mib << 20 == DEFAULT_SIZES.big_bytes
        && sizes.small_files == DEFAULT_SIZES.small_files
        && queue_jobs == DEFAULT_QUEUE;
    match &env.report {
        Some(path) if complete => {
            report::write_section(
                path,
                SECTION,
                "Transfers against curl, wget and aria2c; daemon figures",
                &machine,
                &body,
            )?;
            eprintln!("transfer: wrote section {SECTION} of {}", path.display());
        }
        Some(_) => eprintln!(
            "transfer: not written to the report: it needs every part, the default sizes and at \
             least {MIN_REPORTED_RUNS} runs"
        ),
        None => {}
    }
    Ok(())
}

/// The parts, in order.
async fn measure(ctx: &files::Ctx<'_>, on: &dyn Fn(Part) -> bool, queue: usize) -> Result<Results> {
    let mut r = Results::default();
    let t0 = std::time::Instant::now();
    if on(Part::Big) {
        r.loads.push(("big", load()));
        eprintln!(
            "transfer: one {} MiB file, {} runs per tool …",
            ctx.sizes.big_bytes >> 20,
            ctx.runs
        );
        r.big = Some(files::big(ctx).await.context("the big-file comparison")?);
    }
    if on(Part::Small) {
        r.loads.push(("small", load()));
        eprintln!(
            "transfer: {} small files, {} runs per tool …",
            ctx.sizes.small_files, ctx.runs
        );
        r.small = Some(
            files::small(ctx)
                .await
                .context("the small-files comparison")?,
        );
    }
    if on(Part::Jobs) {
        r.loads.push(("jobs", load()));
        eprintln!(
            "transfer: {} jobs at once, {} runs …",
            ctx.sizes.jobs, ctx.runs
        );
        r.jobs = Some(jobs::many(ctx).await.context("the many-jobs run")?);
    }
    if on(Part::Restart) {
        r.loads.push(("restart", load()));
        r.restart = Some(
            jobs::restart(ctx, queue, on(Part::Idle))
                .await
                .context("the restart run")?,
        );
    }
    if on(Part::Idle) {
        r.loads.push(("idle", load()));
        eprintln!("transfer: an idle daemon with no jobs …");
        r.idle_empty = Some(jobs::idle_empty(ctx).await.context("the idle run")?);
    }
    r.loads.push(("end", load()));
    r.elapsed_s = t0.elapsed().as_secs_f64();
    Ok(r)
}
