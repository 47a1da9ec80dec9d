//! What /proc says about a running process: CPU time, resident memory and its peak, and the
//! context switches of each thread (how often it was woken).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// Kernel clock ticks per second, the unit of `utime`/`stime` in /proc/PID/stat.
pub fn clk_tck() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        // The value on every Linux there is.
        _ => 100.0,
    }
}

/// User plus system CPU time of the whole process (every thread, living or exited), seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name is in parentheses and may hold spaces; the fields after it are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no `)` after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14, stime 15.
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("{path}: too few fields");
    };
    let ticks = utime
        .parse::<u64>()
        .and_then(|u| stime.parse::<u64>().map(|s| u + s))
        .with_context(|| format!("{path}: utime/stime are not numbers"))?;
    Ok(ticks as f64 / clk_tck())
}

/// A `Vm…:` line of /proc/PID/status, in KiB (e.g. `VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_field(&status, field).with_context(|| format!("{path}: no readable {field} line"))
}

/// The number on the `NAME:` line of a /proc status file.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS (`clear_refs` value 5, Linux
/// 4.0+), so a later `VmHWM` is the peak of what happened in between.
pub fn reset_peak_rss(pid: u32) -> Result<()> {
    let path = format!("/proc/{pid}/clear_refs");
    std::fs::write(&path, "5").with_context(|| format!("cannot write 5 to {path}"))
}

/// One thread's context switches so far.
#[derive(Debug, Clone)]
pub struct ThreadSwitches {
    /// The thread's name (`comm`).
    pub name: String,
    /// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches`.
    pub switches: u64,
}

/// Every thread of the process, by thread id, with its context switches.
pub fn thread_switches(pid: u32) -> Result<BTreeMap<u32, ThreadSwitches>> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut out = BTreeMap::new();
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread that exits between the listing and the read is simply not there.
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let (Some(vol), Some(nonvol)) = (
            status_field(&status, "voluntary_ctxt_switches"),
            status_field(&status, "nonvoluntary_ctxt_switches"),
        ) else {
            bail!(
                "{}/status: no context switch counts",
                entry.path().display()
            );
        };
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .map_or_else(|| "?".to_string(), |n| n.trim().to_string());
        out.insert(
            tid,
            ThreadSwitches {
                name,
                switches: vol + nonvol,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_status_fields() {
        let s =
            "Name:\tferryd\nVmHWM:\t   12345 kB\nVmRSS:\t  2048 kB\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(status_field(s, "VmHWM"), Some(12345));
        assert_eq!(status_field(s, "VmRSS"), Some(2048));
        assert_eq!(status_field(s, "voluntary_ctxt_switches"), Some(7));
        assert_eq!(status_field(s, "nonvoluntary_ctxt_switches"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
        let threads = thread_switches(me).unwrap();
        assert!(threads.contains_key(&me));
    }
}
