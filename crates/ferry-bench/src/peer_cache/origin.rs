//! Counting what the origin served: nginx's access log (one line per request in
//! [`ACCESS_LOG_FORMAT`](crate::transfer::nginx::ACCESS_LOG_FORMAT), written when the request
//! ends), read from an offset taken before a run.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long the log must stay the same size before a run's lines are taken as all written.
const SETTLE_QUIET: Duration = Duration::from_millis(300);
/// How long the log may keep growing before that is an error.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the origin served for one path over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests for the path (any method and status).
    pub requests: u64,
    /// Of which with a `Range` header.
    pub ranged: u64,
    /// Of which `HEAD`.
    pub heads: u64,
    /// Body bytes sent for the path (`$body_bytes_sent`, summed).
    pub body_bytes: u64,
}

/// The origin's access log.
pub struct OriginLog {
    /// Where nginx writes it.
    path: PathBuf,
}

impl OriginLog {
    /// The log at `path` (it need not exist yet).
    pub fn new(path: &Path) -> OriginLog {
        OriginLog {
            path: path.to_path_buf(),
        }
    }

    /// The log's current length: where the next run's lines start.
    pub fn offset(&self) -> Result<u64> {
        match std::fs::metadata(&self.path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).with_context(|| format!("cannot stat {}", self.path.display())),
        }
    }

    /// Waits until the log has stopped growing (a response cut short is logged when nginx
    /// notices the closed connection, which can be just after the clients are gone), then
    /// counts the requests for `uri` logged since `offset`.
    pub async fn served_since(&self, offset: u64, uri: &str) -> Result<Served> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let mut len = self.offset()?;
        loop {
            tokio::time::sleep(SETTLE_QUIET).await;
            let now = self.offset()?;
            if now == len {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} still grows {SETTLE_TIMEOUT:?} after the run ended",
                    self.path.display()
                );
            }
            len = now;
        }
        let mut f = std::fs::File::open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        f.seek(SeekFrom::Start(offset))
            .with_context(|| format!("cannot seek in {}", self.path.display()))?;
        let mut text = String::new();
        f.read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        count(&text, uri)
    }
}

/// Sums the lines of `text` (in [`ACCESS_LOG_FORMAT`](crate::transfer::nginx::ACCESS_LOG_FORMAT))
/// whose URI is `uri`; a line that does not parse is an error, since a miscount would go
/// unnoticed otherwise.
fn count(text: &str, uri: &str) -> Result<Served> {
    let mut s = Served::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split_whitespace();
        let (Some(method), Some(_status), Some(bytes), Some(u), Some(range)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            bail!("an access-log line that does not parse: {line}");
        };
        if u != uri {
            continue;
        }
        let bytes: u64 = bytes
            .parse()
            .with_context(|| format!("an access-log line without a byte count: {line}"))?;
        s.requests += 1;
        s.body_bytes += bytes;
        if range != "\"-\"" {
            s.ranged += 1;
        }
        if method == "HEAD" {
            s.heads += 1;
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn counts_only_the_path_and_every_method() {
        let log = "GET 200 3 /probe \"-\"\n\
                   HEAD 200 0 /big \"-\"\n\
                   GET 200 1000 /big \"-\"\n\
                   GET 206 500 /big \"bytes=500-\"\n\
                   \n";
        let s = count(log, "/big").unwrap();
        assert_eq!(
            s,
            Served {
                requests: 3,
                ranged: 1,
                heads: 1,
                body_bytes: 1500
            }
        );
        assert!(count("GET 200 /big\n", "/big").is_err());
        assert!(count("GET 200 x /big \"-\"\n", "/big").is_err());
    }

    #[tokio::test]
    async fn reads_from_the_offset() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("access.log");
        let log = OriginLog::new(&path);
        assert_eq!(log.offset().unwrap(), 0);
        std::fs::write(&path, "GET 200 7 /big \"-\"\n").unwrap();
        let at = log.offset().unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("GET 206 5 /big \"bytes=0-4\"\n");
        std::fs::write(&path, text).unwrap();
        let s = log.served_since(at, "/big").await.unwrap();
        assert_eq!((s.requests, s.body_bytes, s.ranged), (1, 5, 1));
    }
}
