//! Timing a command from spawn to exit, and summarising repeated measurements.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result};
use time::OffsetDateTime;

/// Repeated measurements of one quantity.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    /// Adds a measurement.
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// The values, sorted.
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the middle two for an even count); 0 for none.
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        let n = v.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The smallest; 0 for none.
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(0.0)
    }

    /// The largest; 0 for none.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(0.0)
    }
}

/// One timed run of a command.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Spawn to exit, seconds.
    pub secs: f64,
    /// User + system CPU the command used (with its own children), seconds.
    pub cpu_s: f64,
    /// Wall clock just before spawning (to compare with the daemon's event times).
    pub started: OffsetDateTime,
    /// Wall clock once it had exited.
    pub ended: OffsetDateTime,
    /// Whether it exited with status 0.
    pub success: bool,
    /// How it exited and the end of its stderr, when it failed.
    pub failure: String,
}

/// A command to time: program, arguments and working directory.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl Cmd {
    /// `program` with no arguments yet.
    pub fn new(program: &Path) -> Cmd {
        Cmd {
            program: program.to_path_buf(),
            args: Vec::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, a: I) -> Cmd {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// The command line as a reader would type it, with `work` shown as `$WORK`.
    pub fn display(&self, work: &Path) -> String {
        let work = work.to_string_lossy();
        let name = self
            .program
            .file_name()
            .map_or_else(|| self.program.to_string_lossy(), |n| n.to_string_lossy());
        let mut s = name.into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy().replace(work.as_ref(), "$WORK"));
        }
        s
    }

    /// The command line exactly as run.
    fn full(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// Runs it in `cwd` with stdout discarded (as a user would redirect it) and times it from
    /// spawn to exit. A failure exit is reported in the result, not as an error: the caller
    /// decides.
    pub async fn run_timed(&self, cwd: &Path) -> Result<Timed> {
        let before = children_cpu()?;
        let started = OffsetDateTime::now_utc();
        let t0 = Instant::now();
        let out = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .current_dir(cwd)
            .env_remove("FERRY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        let secs = t0.elapsed().as_secs_f64();
        let ended = OffsetDateTime::now_utc();
        // Only this command was reaped in between (the daemon and nginx live on), so the
        // difference is its CPU time.
        let cpu_s = children_cpu()? - before;
        let success = out.status.success();
        let failure = if success {
            String::new()
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            format!(
                "`{}` failed ({}); its stderr ends:\n{}",
                self.full(),
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        };
        Ok(Timed {
            secs,
            cpu_s,
            started,
            ended,
            success,
            failure,
        })
    }
}

/// CPU seconds (user + system) of every reaped child of this process so far.
fn children_cpu() -> Result<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN) failed")?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Ok(secs(u.user_time()) + secs(u.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let mut s = Samples::default();
        for v in [5.0, 1.0, 3.0, 2.0, 4.0] {
            s.push(v);
        }
        assert_eq!((s.median(), s.min(), s.max()), (3.0, 1.0, 5.0));
        s.push(6.0);
        assert_eq!(s.median(), 3.5);
        assert_eq!(Samples::default().median(), 0.0);
    }

    #[test]
    fn displays_with_the_work_dir_abbreviated() {
        let c = Cmd::new(Path::new("/usr/bin/curl"))
            .arg("-o")
            .arg("/tmp/w/out/big.bin");
        assert_eq!(c.display(Path::new("/tmp/w")), "curl -o $WORK/out/big.bin");
    }
}
