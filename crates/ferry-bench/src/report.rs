//! `docs/BENCHMARKS.md`: one section per benchmark, each between
//! `<!-- bench:NAME:start -->` and `<!-- bench:NAME:end -->`, so a run of one benchmark replaces
//! its own section and leaves the others (possibly measured on other machines) alone. Each
//! section therefore carries its own description of the machine it was measured on.
//!
//! Also here: describing the machine and the file system a path lives on, since both decide
//! how a number is to be read.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What a new report file starts with.
const PREAMBLE: &str = "# Ferry benchmarks\n\n\
Written by `ferry-bench` (`crates/ferry-bench`). Each benchmark owns the section between its \
`bench:NAME` markers and rewrites it on every run, with the machine it ran on; edits inside a \
section are lost on the next run, edits outside are kept.\n";

/// The machine a benchmark ran on.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may use (what `nproc` prints).
    pub nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// `uname -srm`.
    pub kernel: String,
    /// When the benchmark ran (UTC).
    pub date: String,
    /// The workspace's commit, with a mark when it has uncommitted changes.
    pub commit: Option<String>,
    /// The 1/5/15-minute load averages when the benchmark started: other work on the machine
    /// skews latencies, and the reader should see that it was there.
    pub load: Option<String>,
}

impl Machine {
    /// Describes the machine this process runs on.
    pub fn collect() -> Machine {
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = command_output("uname", &["-srm"])
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| format!("Linux {}", s.trim()))
            })
            .unwrap_or_else(|| "unknown kernel".into());
        let now = OffsetDateTime::now_utc();
        let date = now
            .replace_nanosecond(0)
            .unwrap_or(now)
            .format(&Rfc3339)
            .unwrap_or_else(|_| now.unix_timestamp().to_string());
        Machine {
            nproc,
            cpu_model,
            kernel,
            date,
            commit: commit(crate::workspace_root()),
            load: std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| {
                let avgs: Vec<&str> = l.split_whitespace().take(3).collect();
                (avgs.len() == 3).then(|| avgs.join(" "))
            }),
        }
    }

    /// One Markdown paragraph naming the machine.
    pub fn markdown(&self) -> String {
        let commit = self
            .commit
            .as_deref()
            .map(|c| format!("; ferry `{c}`"))
            .unwrap_or_default();
        let load = self
            .load
            .as_deref()
            .map(|l| format!("; load average at start {l}"))
            .unwrap_or_default();
        format!(
            "_Measured {date} on {nproc} CPU(s) ({cpu}), {kernel}{commit}{load}._",
            date = self.date,
            nproc = self.nproc,
            cpu = self.cpu_model,
            kernel = self.kernel,
        )
    }
}

/// The file system a path lives on.
#[derive(Debug, Clone)]
pub struct Filesystem {
    /// File system type as the kernel names it (`ext4`, `tmpfs`, …).
    pub fstype: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The mounted device or source.
    pub source: String,
}

impl Filesystem {
    /// Whether it lives in memory (no fsync ever reaches a disk).
    pub fn in_memory(&self) -> bool {
        matches!(self.fstype.as_str(), "tmpfs" | "ramfs")
    }
}

impl std::fmt::Display for Filesystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} on {})",
            self.fstype,
            self.source,
            self.mount_point.display()
        )
    }
}

/// The file system `path` lives on: the longest mount point in /proc/mounts that contains it
/// (more precise than `stat -f`, which says `ext2/ext3` for ext4), else `stat -f -c %T`.
pub fn filesystem_of(path: &Path) -> Filesystem {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let from_mounts = std::fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|mounts| {
            mounts
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (source, point, fstype) = (f.next()?, f.next()?, f.next()?);
                    Some(Filesystem {
                        fstype: fstype.to_string(),
                        mount_point: PathBuf::from(unescape_mount(point)),
                        source: unescape_mount(source),
                    })
                })
                .filter(|fs| path.starts_with(&fs.mount_point))
                // Later lines win ties: a mount stacked on the same point hides the earlier one.
                .max_by_key(|fs| fs.mount_point.as_os_str().len())
        });
    from_mounts.unwrap_or_else(|| Filesystem {
        fstype: command_output("stat", &["-f", "-c", "%T", &path.to_string_lossy()])
            .unwrap_or_else(|| "unknown".into()),
        mount_point: path.clone(),
        source: "?".into(),
    })
}

/// Replaces (or appends) section `name` of the report at `path`, creating the file if needed.
/// `body` is the section's Markdown without markers or machine line; both are added here.
pub fn write_section(
    path: &Path,
    name: &str,
    title: &str,
    machine: &Machine,
    body: &str,
) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => PREAMBLE.to_string(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let block = format!(
        "## {title}\n\n{machine}\n\n{body}\n",
        machine = machine.markdown(),
        body = body.trim_end()
    );
    let updated = splice(&existing, name, &block).with_context(|| path.display().to_string())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Written aside and renamed, so an interrupted run never leaves a truncated report.
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, updated).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// `doc` with section `name` set to `block` (markers added): in place when the markers exist,
/// else appended. Markers that are duplicated or unbalanced are an error rather than a guess,
/// since guessing could delete another benchmark's results.
fn splice(doc: &str, name: &str, block: &str) -> Result<String> {
    let start = format!("<!-- bench:{name}:start -->");
    let end = format!("<!-- bench:{name}:end -->");
    let section = format!("{start}\n{}\n{end}", block.trim_end());
    match (doc.matches(&start).count(), doc.matches(&end).count()) {
        (0, 0) => {
            let mut out = doc.trim_end().to_string();
            out.push_str("\n\n");
            out.push_str(&section);
            out.push('\n');
            Ok(out)
        }
        (1, 1) => {
            let (Some(s), Some(e)) = (doc.find(&start), doc.find(&end)) else {
                bail!("section {name}: markers vanished");
            };
            if e < s {
                bail!("section {name}: the end marker comes before the start marker");
            }
            Ok(format!("{}{section}{}", &doc[..s], &doc[e + end.len()..]))
        }
        (s, e) => bail!(
            "section {name}: expected one start and one end marker, found {s} and {e}; fix the file by hand"
        ),
    }
}

/// `/proc/mounts` escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = s.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A command's trimmed stdout, or `None` if it could not run or failed.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The short commit of the workspace, plus a mark for uncommitted changes; `None` outside git.
fn commit(root: &Path) -> Option<String> {
    let root = root.to_string_lossy();
    let head = command_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"])?;
    let dirty = Command::new("git")
        .args(["-C", &root, "status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    Some(if dirty {
        format!("{head}+uncommitted changes")
    } else {
        head
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn appends_a_new_section_and_replaces_only_its_own() {
        let doc = splice(PREAMBLE, "a", "## A\n\none\n").unwrap();
        let doc = splice(&doc, "b", "## B\n\ntwo\n").unwrap();
        let doc = splice(&doc, "a", "## A\n\nthree\n").unwrap();
        assert!(doc.starts_with(PREAMBLE.trim_end()));
        assert!(doc.contains("<!-- bench:a:start -->\n## A\n\nthree\n<!-- bench:a:end -->"));
        assert!(doc.contains("<!-- bench:b:start -->\n## B\n\ntwo\n<!-- bench:b:end -->"));
        assert!(!doc.contains("one"));
        // Section a keeps its place ahead of b.
        assert!(doc.find("bench:a:start").unwrap() < doc.find("bench:b:start").unwrap());
    }

    #[test]
    fn keeps_text_outside_the_markers() {
        let doc = "# T\n\nintro\n\n<!-- bench:a:start -->\nold\n<!-- bench:a:end -->\n\nnotes\n";
        let out = splice(doc, "a", "new").unwrap();
        assert_eq!(
            out,
            "# T\n\nintro\n\n<!-- bench:a:start -->\nnew\n<!-- bench:a:end -->\n\nnotes\n"
        );
    }

    #[test]
    fn refuses_broken_markers() {
        assert!(splice("<!-- bench:a:start -->\n", "a", "x").is_err());
        assert!(splice("<!-- bench:a:end -->\n<!-- bench:a:start -->\n", "a", "x").is_err());
        let twice = "<!-- bench:a:start -->\n<!-- bench:a:end -->\n".repeat(2);
        assert!(splice(&twice, "a", "x").is_err());
    }

    #[test]
    fn a_name_that_prefixes_another_is_its_own_section() {
        let doc = splice("", "notify-latency-x", "x").unwrap();
        let doc = splice(&doc, "notify-latency", "y").unwrap();
        assert!(doc.contains("<!-- bench:notify-latency-x:start -->\nx\n"));
        assert!(doc.contains("<!-- bench:notify-latency:start -->\ny\n"));
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn finds_the_file_system_of_the_root() {
        let fs = filesystem_of(Path::new("/"));
        assert_eq!(fs.mount_point, PathBuf::from("/"));
        assert!(!fs.fstype.is_empty());
    }
}
