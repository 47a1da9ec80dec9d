//! The report section: origin bytes and wall time per mode against the target, then where each
//! host's bytes came from with the cache on.

use super::scenario::Run;
use super::{Mode, Setup, TARGET_RATIO};
use crate::transfer::render::{size, spread, verdict};
use crate::transfer::timing::Samples;

/// Bytes in a MiB, as a float.
const MIB: f64 = (1u64 << 20) as f64;

/// A ratio's `median× (min–max)`.
fn times(s: &Samples) -> String {
    format!("{:.2}× ({:.2}–{:.2})", s.median(), s.min(), s.max())
}

/// `f` of every run in `mode`.
fn samples(runs: &[Run], mode: Mode, f: impl Fn(&Run) -> f64) -> Samples {
    let mut s = Samples::default();
    for r in runs.iter().filter(|r| r.mode == mode) {
        s.push(f(r));
    }
    s
}

/// The section's Markdown.
pub fn render(runs: &[Run], s: &Setup) -> String {
    let mut md = String::new();
    let file = size(s.size);
    md.push_str(&format!(
        "What is measured: {hosts} `ferryd` hosts (`{ferryd}`, defaults plus \
         `--retry-delay-floor 1` and `--config`), each with its own socket, state dir and \
         configuration file, fetch the same {file} file from one local nginx, the origin \
         ({nginx}; a static file, so a strong ETag, `Range`, `If-Range` and `HEAD`; \
         `sendfile on`; an access log recording `$body_bytes_sent`). Host i's peer cache \
         listens on 127.0.0.(i+1), with every other host as a static peer (`discovery = \
         \"static\"`, one shared secret, `min_file_size = 0`, a 10 GiB limit); the cache-off \
         fleet has the same configuration with `enabled = false`. Each run starts a fresh \
         fleet; host 1 downloads the file (`job.resume` until `transferred`, then \
         `job.complete`); with the cache on, the benchmark then waits until host 1's \
         `cache.list` shows the file (polled every 20 ms; a file is published only once \
         complete); then hosts 2..{hosts} download it at once. Wall time runs from host 1's \
         `job.resume` to the last host's `transferred`. Origin bytes are the sum of \
         `$body_bytes_sent` over every request for the file during the run, read once the \
         fleet has stopped. Downloads go to the benchmark's directory under the temp dir \
         ({fs}) and are deleted between runs; in the first run of each mode every download is \
         compared byte for byte with the source (sizes in every run). {runs} run(s) per mode, \
         alternating which mode goes first; median (min–max). Nothing is dropped or \
         adjusted.\n\n",
        hosts = s.hosts,
        ferryd = s.ferryd,
        nginx = s.nginx,
        fs = s.fs,
        runs = s.runs,
    ));
    md.push_str(&format!(
        "The measurement took {:.0} s; load average (1/5/15 min) at the end: {}.\n\n",
        s.elapsed_s, s.load_end
    ));

    md.push_str("### Against the target\n\n");
    md.push_str(
        "| mode | origin bytes | × file size | origin requests | wall time | host 1 alone | \
         publication wait | hosts 2..N at once |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let size_f = s.size as f64;
    for mode in [Mode::Off, Mode::On] {
        if !runs.iter().any(|r| r.mode == mode) {
            continue;
        }
        let publish = if mode == Mode::On {
            spread(&samples(runs, mode, |r| r.publish_s.unwrap_or(0.0)), 3, "s")
        } else {
            "—".to_string()
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {publish} | {} |\n",
            mode.label(),
            spread(
                &samples(runs, mode, |r| r.origin.body_bytes as f64 / MIB),
                1,
                "MiB"
            ),
            times(&samples(runs, mode, |r| r.origin.body_bytes as f64 / size_f)),
            spread(&samples(runs, mode, |r| r.origin.requests as f64), 0, ""),
            spread(&samples(runs, mode, |r| r.wall_s), 3, "s"),
            spread(&samples(runs, mode, |r| r.first_s), 3, "s"),
            spread(&samples(runs, mode, |r| r.rest_s), 3, "s"),
        ));
    }
    let on = samples(runs, Mode::On, |r| r.origin.body_bytes as f64 / size_f);
    if runs.iter().any(|r| r.mode == Mode::On) {
        let worst = on.max();
        md.push_str(&format!(
            "\nTarget: with the cache on, the origin serves at most {TARGET_RATIO}× \
             the file's size: {}.\n",
            verdict(
                worst <= TARGET_RATIO,
                format!(
                    "largest of {} run(s) {worst:.3}×, i.e. {:.1} MiB for the {file} file",
                    s.runs,
                    worst * size_f / MIB
                )
            )
        ));
    }

    md.push_str(&per_host(runs));
    md.push_str(&every_run(runs));
    md
}

/// Every run in the order measured: origin bytes and requests, wall time.
fn every_run(runs: &[Run]) -> String {
    let mut md = String::from(
        "\n### Every run\n\n\
         | run | mode | origin bytes | origin requests | wall time |\n\
         | ---: | --- | ---: | ---: | ---: |\n",
    );
    for r in runs {
        md.push_str(&format!(
            "| {} | {} | {:.1} MiB | {} ({} HEAD, {} ranged) | {:.3} s |\n",
            r.number,
            r.mode.label(),
            r.origin.body_bytes as f64 / MIB,
            r.origin.requests,
            r.origin.heads,
            r.origin.ranged,
            r.wall_s
        ));
    }
    md
}

/// Per host and cache-on run: MiB from peers, from the origin, and served to peers.
fn per_host(runs: &[Run]) -> String {
    let on: Vec<&Run> = runs.iter().filter(|r| r.mode == Mode::On).collect();
    let Some(first) = on.first() else {
        return String::new();
    };
    let mut md = String::from(
        "\n### Where each host's bytes came from, cache on\n\n\
         MiB from peers / from the origin (the file's `bytes_from_peers` / `bytes_from_origin`) \
         / served to peers (its cache's `bytes_served` in `cache.info`), and the host's own \
         `job.resume` → `transferred`, per run.\n\n| host |",
    );
    for (i, _) in on.iter().enumerate() {
        md.push_str(&format!(" run {} |", i + 1));
    }
    md.push_str("\n| --- |");
    for _ in &on {
        md.push_str(" ---: |");
    }
    md.push('\n');
    for h in 0..first.hosts.len() {
        md.push_str(&format!("| {} |", h + 1));
        for r in &on {
            match r.hosts.get(h) {
                Some(x) => md.push_str(&format!(
                    " {:.1} / {:.1} / {:.1} MiB, {:.3} s |",
                    x.from_peers as f64 / MIB,
                    x.from_origin as f64 / MIB,
                    x.served as f64 / MIB,
                    x.secs
                )),
                None => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::origin::Served;
    use super::super::scenario::HostRun;
    use super::*;

    fn run(mode: Mode, origin_mib: u64, peers: u64) -> Run {
        let host = |p: u64| HostRun {
            secs: 1.0,
            from_peers: p << 20,
            from_origin: (10 - p) << 20,
            served: 0,
        };
        Run {
            number: 1,
            mode,
            origin: Served {
                requests: 2,
                ranged: 0,
                heads: 1,
                body_bytes: origin_mib << 20,
            },
            wall_s: 2.0,
            first_s: 1.0,
            publish_s: (mode == Mode::On).then_some(0.1),
            rest_s: 0.9,
            hosts: vec![host(0), host(peers)],
        }
    }

    fn setup() -> Setup {
        Setup {
            size: 10 << 20,
            hosts: 2,
            runs: 1,
            fs: crate::report::filesystem_of(std::path::Path::new("/")),
            nginx: "nginx version: nginx/1.22.1".into(),
            ferryd: "target/release/ferryd".into(),
            load_end: "0.1 0.1 0.1".into(),
            elapsed_s: 5.0,
        }
    }

    #[test]
    fn the_target_is_judged_on_the_worst_cache_on_run() {
        let md = render(&[run(Mode::Off, 20, 0), run(Mode::On, 10, 10)], &setup());
        assert!(md.contains("| cache off | 20.0 MiB (20.0–20.0) | 2.00× (2.00–2.00) |"));
        assert!(md.contains("| cache on | 10.0 MiB (10.0–10.0) | 1.00× (1.00–1.00) |"));
        assert!(md.contains("file's size: met (largest of 1 run(s) 1.000×"));
        assert!(md.contains("| 2 | 10.0 / 0.0 / 0.0 MiB, 1.000 s |"));
        assert!(md.contains("| 1 | cache on | 10.0 MiB | 2 (1 HEAD, 0 ranged) | 2.000 s |"));
        let md = render(&[run(Mode::On, 12, 8)], &setup());
        assert!(md.contains("**missed** (largest of 1 run(s) 1.200×"));
    }
}
