//! The benchmark's files: the directory everything lives in, the content nginx serves, finding
//! the peer programs, and checking what a tool wrote.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Names of the sizes and counts the benchmark uses, so that every tool gets the same files.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Bytes of the big file.
    pub big_bytes: u64,
    /// How many small files.
    pub small_files: usize,
    /// Bytes of each small file.
    pub small_bytes: usize,
    /// How many jobs in the many-jobs run.
    pub jobs: usize,
    /// Bytes of each job's file.
    pub job_bytes: usize,
}

/// The benchmark's directory (in the temp dir, so on one file system for every tool):
/// `w/` is what nginx serves, `o/` is where the tools write (emptied between runs), `l/` holds
/// the URL lists, `n/` is nginx's prefix and `d-*/` the daemons' sockets and state. Names are
/// short on purpose: see [`crate::transfer`] on the size of the file list ferry sends.
pub struct Work {
    root: PathBuf,
    /// Removes the directory when dropped, unless kept.
    dir: Option<tempfile::TempDir>,
}

impl Work {
    /// Creates a fresh directory under the temp dir.
    pub fn create() -> Result<Work> {
        let dir = tempfile::Builder::new()
            .prefix("fb-")
            .tempdir()
            .context("cannot create a temp dir for the benchmark")?;
        let root = dir.path().to_path_buf();
        for sub in ["w", "w/s", "w/m", "o", "l", "n"] {
            let p = root.join(sub);
            std::fs::create_dir_all(&p)
                .with_context(|| format!("cannot create {}", p.display()))?;
        }
        Ok(Work {
            root,
            dir: Some(dir),
        })
    }

    /// Leaves the directory in place when the benchmark ends (for inspection).
    pub fn keep(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.root.clone()
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// nginx's document root.
    pub fn www(&self) -> PathBuf {
        self.root.join("w")
    }

    /// Where the tools write.
    pub fn out(&self) -> PathBuf {
        self.root.join("o")
    }

    /// Where the URL lists go.
    pub fn lists(&self) -> PathBuf {
        self.root.join("l")
    }

    /// nginx's prefix.
    pub fn nginx_prefix(&self) -> PathBuf {
        self.root.join("n")
    }

    /// A daemon's directory (socket and state), by name.
    pub fn daemon_root(&self, name: &str) -> PathBuf {
        self.root.join(format!("d-{name}"))
    }

    /// Empties the output directory (and lets the file system settle: `syncfs`, so writeback
    /// left over from one run does not slow down the next). Not timed.
    ///
    /// Many small outputs are parked under `t/` instead of deleted: ext4 will not reuse an
    /// inode freed in the last minute and scans past each such one when it allocates, so
    /// deleting 10 000 files right before a run made that run's file creation up to twice as
    /// slow (`perf`: `recently_deleted`), for whichever tool came next. They go with the
    /// benchmark's directory at the end. Large outputs are deleted (their space matters more).
    pub fn reset_out(&self) -> Result<PathBuf> {
        let out = self.out();
        let many = std::fs::read_dir(&out).map_or(0, |d| d.take(PARK_ABOVE + 1).count());
        let gone = if many > PARK_ABOVE {
            let parked = self.root.join("t");
            std::fs::create_dir_all(&parked)
                .with_context(|| format!("cannot create {}", parked.display()))?;
            let n = std::fs::read_dir(&parked).map_or(0, |d| d.count());
            std::fs::rename(&out, parked.join(n.to_string()))
        } else {
            std::fs::remove_dir_all(&out)
        };
        match gone {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot clear {}", out.display())),
        }
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let dir = std::fs::File::open(&self.root)
            .with_context(|| format!("cannot open {}", self.root.display()))?;
        nix::unistd::syncfs(&dir).with_context(|| format!("syncfs {}", self.root.display()))?;
        Ok(out)
    }
}

/// Output directories with more entries than this are parked, not deleted ([`Work::reset_out`]).
const PARK_ABOVE: usize = 1000;

/// Path of the big file under the document root.
pub const BIG: &str = "big";

/// The URL path of small file `i`.
pub fn small_name(i: usize) -> String {
    format!("{i:05}")
}

/// The URL path of job file `i`.
pub fn job_name(i: usize) -> String {
    format!("{i:03}")
}

/// Fills `buf` with xorshift64* output from `seed`: incompressible and distinct per seed.
fn fill(buf: &mut [u8], seed: u64) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buf.chunks_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Writes the content nginx serves for the parts that run.
pub fn write_content(work: &Work, sizes: &Sizes, big: bool, small: bool, jobs: bool) -> Result<()> {
    let www = work.www();
    std::fs::write(www.join("probe"), b"ok\n").context("cannot write the probe file")?;
    if big {
        let path = www.join(BIG);
        let mut f = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        let mut buf = vec![0u8; 1 << 20];
        let mut left = sizes.big_bytes;
        let mut seed = 1u64 << 40;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            fill(&mut buf[..n], seed);
            f.write_all(&buf[..n])
                .with_context(|| format!("cannot write {}", path.display()))?;
            left -= n as u64;
            seed += 1;
        }
        f.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if small {
        let mut buf = vec![0u8; sizes.small_bytes];
        for i in 0..sizes.small_files {
            fill(&mut buf, i as u64 + 1);
            let p = www.join("s").join(small_name(i));
            std::fs::write(&p, &buf).with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    if jobs {
        let mut buf = vec![0u8; sizes.job_bytes];
        for i in 0..sizes.jobs {
            fill(&mut buf, (1u64 << 20) + i as u64);
            let p = www.join("m").join(job_name(i));
            std::fs::write(&p, &buf).with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    // The sources are read from the page cache by every tool alike; written out now so their
    // writeback does not land in someone's timing.
    let dir = std::fs::File::open(work.root())
        .with_context(|| format!("cannot open {}", work.root().display()))?;
    nix::unistd::syncfs(&dir).context("syncfs after writing the content")?;
    Ok(())
}

/// `name` on PATH, else in the sbin directories a non-root PATH often lacks (nginx lives in
/// /usr/sbin).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The start of the first line a program prints for its version (stdout or stderr), or
/// `unknown`.
pub fn version_line(program: &Path, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            // The first three words: name and version, without curl's list of libraries.
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Checks that `got` is a file of `len` bytes and, if `compare`, that it equals `want`.
pub fn check_file(got: &Path, want: &Path, len: u64, compare: bool) -> Result<()> {
    let meta = std::fs::metadata(got).with_context(|| format!("{} is missing", got.display()))?;
    if meta.len() != len {
        bail!("{} has {} bytes, not {len}", got.display(), meta.len());
    }
    if compare && !same_content(got, want)? {
        bail!("{} differs from {}", got.display(), want.display());
    }
    Ok(())
}

/// Whether two files hold the same bytes.
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let open =
        |p: &Path| std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na =
            read_full(&mut fa, &mut ba).with_context(|| format!("cannot read {}", a.display()))?;
        let nb =
            read_full(&mut fb, &mut bb).with_context(|| format!("cannot read {}", b.display()))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn fill_is_distinct_per_seed_and_handles_odd_lengths() {
        let (mut a, mut b) = (vec![0u8; 4099], vec![0u8; 4099]);
        fill(&mut a, 1);
        fill(&mut b, 2);
        assert_ne!(a, b);
        let mut c = vec![0u8; 4099];
        fill(&mut c, 1);
        assert_eq!(a, c);
    }

    #[test]
    fn compares_files() {
        let d = tempfile::tempdir().unwrap();
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        std::fs::write(&a, b"hello").unwrap();
        std::fs::write(&b, b"hello").unwrap();
        std::fs::write(&c, b"hellx").unwrap();
        check_file(&a, &b, 5, true).unwrap();
        assert!(check_file(&a, &c, 5, true).is_err());
        assert!(check_file(&a, &b, 4, false).is_err());
    }
}
