//! `ferry-bench peer-cache`: how much the peer cache spares the origin server. A
//! fleet of N real `ferryd` hosts on the loopback network fetches the same file, once with the
//! peer cache off and once on, in the same invocation; measured are the body bytes the origin
//! sent for the file (from the origin's access log), the total wall time, and where each
//! host's bytes came from (`bytes_from_peers` / `bytes_from_origin` of its file).
//!
//! - The origin is the same local nginx the `transfer` benchmark uses (static files: strong
//!   ETags, `Range`, `If-Range`, `HEAD`), with an access log recording `$body_bytes_sent` for
//!   every request (see [`origin`]).
//! - Host i (1..=N) is a `ferryd` with its own socket, state dir and configuration file, its
//!   peer cache listening on 127.0.0.(i+1) with every other host as a static peer (see
//!   [`fleet`]). Every run gets a fresh fleet, so no run finds the file cached by an earlier
//!   one.
//! - A run (see [`scenario`]): host 1 downloads the file (`job.resume` … `transferred`,
//!   `job.complete`); with the cache on, the benchmark waits until host 1's `cache.list` shows
//!   it (a file is published only once complete); then hosts 2..N download it at once. The wall
//!   time runs from host 1's `job.resume` to the last host's `transferred`.
//! - The modes alternate (run r starts with the cache off when r is odd, on when even) so that
//!   drift on the machine spreads over both; medians and min–max over the runs are reported.
//!
//! The target: with the cache on, the origin serves at most 1.1× the file's size.

mod fleet;
mod origin;
mod render;
mod scenario;

use anyhow::{Context, Result};

use crate::report::{self, Machine};
use crate::transfer::nginx::Nginx;
use crate::transfer::setup::{self, BIG, Sizes, Work};
use crate::transfer::{load, shown};
use origin::OriginLog;
use scenario::Run;

/// The report section this benchmark owns.
const SECTION: &str = "peer-cache";
/// The file size the target is about, MiB; the report is written only with it.
const DEFAULT_SIZE_MIB: u64 = 200;
/// The fleet size the target is about; the report is written only with it.
const DEFAULT_HOSTS: u64 = 5;
/// The runs per mode a result needs to be recorded.
const MIN_REPORTED_RUNS: usize = 3;
/// The most the origin may serve with the cache on, as a multiple of the file's size.
pub const TARGET_RATIO: f64 = 1.1;

/// Whether the fleet's peer cache is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `enabled = false`: every host downloads from the origin.
    Off,
    /// `enabled = true`: hosts 2..N may get the file from their peers.
    On,
}

impl Mode {
    /// A short name for directories.
    fn slug(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::On => "on",
        }
    }

    /// The name the report uses.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Off => "cache off",
            Mode::On => "cache on",
        }
    }
}

/// `peer-cache` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Size of the file every host fetches, in MiB (the report needs 200).
    #[arg(long, default_value_t = DEFAULT_SIZE_MIB, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    size_mib: u64,
    /// Hosts in the fleet, on 127.0.0.2 onwards (the report needs 5).
    #[arg(long, default_value_t = DEFAULT_HOSTS, value_parser = clap::value_parser!(u64).range(2..=253))]
    hosts: u64,
    /// Runs per mode; medians and min–max are reported (the report needs at least 3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Keep the benchmark's directory (content, nginx config and access log, daemon states).
    #[arg(long)]
    keep: bool,
}

/// What the report says about the setup.
pub struct Setup {
    /// The file's size in bytes.
    pub size: u64,
    /// Hosts in the fleet.
    pub hosts: usize,
    /// Runs per mode.
    pub runs: usize,
    /// The file system of the benchmark's directory (downloads, daemon states).
    pub fs: report::Filesystem,
    /// nginx's version line.
    pub nginx: String,
    /// `ferryd`, relative to the workspace when inside it.
    pub ferryd: String,
    /// Load average (1/5/15 min) at the end.
    pub load_end: String,
    /// How long the measurement took, seconds.
    pub elapsed_s: f64,
}

/// Runs the benchmark and records the results.
pub async fn run(env: &crate::Env, args: &Args) -> Result<()> {
    let machine = Machine::collect();
    let runs = usize::try_from(args.runs).context("--runs is too large")?;
    let hosts = usize::try_from(args.hosts).context("--hosts is too large")?;
    let size = args.size_mib << 20;
    let nginx_bin = setup::find_program("nginx")
        .context("nginx is not installed; run `bash scripts/bench-peers.sh` (Debian packages)")?;

    let mut work = Work::create()?;
    let fs = report::filesystem_of(work.root());
    eprintln!(
        "peer-cache: writing the {} MiB file under {} ({fs}) …",
        args.size_mib,
        work.root().display()
    );
    let sizes = Sizes {
        big_bytes: size,
        small_files: 0,
        small_bytes: 0,
        jobs: 0,
        job_bytes: 0,
    };
    setup::write_content(&work, &sizes, true, false, false)?;
    let log_path = work.nginx_prefix().join("access.log");
    let nginx = Nginx::start(
        &nginx_bin,
        &work.nginx_prefix(),
        &work.www(),
        Some(&log_path),
    )
    .await?;
    let origin = OriginLog::new(&log_path);
    let uri = format!("/{BIG}");
    let ctx = scenario::Ctx {
        work: &work,
        ferryd: &env.ferryd,
        url: format!("{}{uri}", nginx.base_url()),
        uri,
        source: work.www().join(BIG),
        size,
        hosts,
        origin: &origin,
        keep: args.keep,
    };
    eprintln!(
        "peer-cache: nginx serves {}; {hosts} hosts, {runs} run(s) per mode …",
        ctx.url
    );
    let t0 = std::time::Instant::now();
    let measured = measure(&ctx, runs).await;
    let elapsed_s = t0.elapsed().as_secs_f64();
    // Stopped whatever happened, so a failed run leaves no server behind.
    let stopped = nginx.stop().await;
    if args.keep {
        eprintln!("peer-cache: kept {}", work.keep().display());
    }
    let results = measured?;
    stopped?;

    let setup_info = Setup {
        size,
        hosts,
        runs,
        fs,
        nginx: setup::version_line(&nginx_bin, "-v"),
        ferryd: shown(&env.ferryd),
        load_end: load(),
        elapsed_s,
    };
    let body = render::render(&results, &setup_info);
    println!("{body}");
    let complete = args.size_mib == DEFAULT_SIZE_MIB
        && args.hosts == DEFAULT_HOSTS
        && runs >= MIN_REPORTED_RUNS;
    match &env.report {
        Some(path) if complete => {
            report::write_section(
                path,
                SECTION,
                "Peer cache: origin bytes and wall time for a fleet of hosts",
                &machine,
                &body,
            )?;
            eprintln!("peer-cache: wrote section {SECTION} of {}", path.display());
        }
        Some(_) => eprintln!(
            "peer-cache: not written to the report: it needs --size-mib {DEFAULT_SIZE_MIB}, \
             --hosts {DEFAULT_HOSTS} and at least {MIN_REPORTED_RUNS} runs"
        ),
        None => {}
    }
    Ok(())
}

/// Every run of both modes, alternating which goes first.
async fn measure(ctx: &scenario::Ctx<'_>, runs: usize) -> Result<Vec<Run>> {
    let mut results = Vec::with_capacity(2 * runs);
    for r in 1..=runs {
        let order = if r % 2 == 1 {
            [Mode::Off, Mode::On]
        } else {
            [Mode::On, Mode::Off]
        };
        for mode in order {
            let run = scenario::run(ctx, mode, r, r == 1)
                .await
                .with_context(|| format!("{}, run {r}", mode.label()))?;
            let peers: Vec<String> = run
                .hosts
                .iter()
                .map(|h| format!("{:.1}", h.from_peers as f64 / f64::from(1 << 20)))
                .collect();
            eprintln!(
                "peer-cache: run {r}/{runs} {:<9}: origin {:.1} MiB in {} request(s) ({} HEAD, {} \
                 ranged; {:.2}× the file), wall {:.3} s (host 1 {:.3} s, publication {}, others {:.3} s); MiB from \
                 peers per host: {}",
                mode.label(),
                run.origin.body_bytes as f64 / f64::from(1 << 20),
                run.origin.requests,
                run.origin.heads,
                run.origin.ranged,
                run.origin.body_bytes as f64 / ctx.size as f64,
                run.wall_s,
                run.first_s,
                run.publish_s
                    .map_or_else(|| "—".to_string(), |s| format!("{s:.3} s")),
                run.rest_s,
                peers.join(" "),
            );
            results.push(run);
        }
    }
    Ok(results)
}
