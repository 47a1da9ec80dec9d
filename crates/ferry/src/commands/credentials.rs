//! Reading HTTP credentials for `ferry set` from a prompt, a file or stdin, never from the
//! command line (whose arguments every local user can read in /proc).

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use ferry_client::proto::params::Credentials;
use ferry_client::proto::settings::{MAX_CREDENTIAL_PASSWORD, MAX_CREDENTIAL_USER};

use crate::usage::UsageError;

/// The most bytes read for one credentials line: the longest user and password the daemon
/// accepts, four bytes a character, and the separator.
const MAX_LINE: u64 = ((MAX_CREDENTIAL_USER + MAX_CREDENTIAL_PASSWORD) * 4 + 2) as u64;

/// The credentials `--user USER` or `--credentials-file PATH` ask for, or `None` when neither
/// was given. The reading blocks (a terminal, a pipe), so it runs on the blocking pool.
pub async fn read(
    user: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<Option<Credentials>> {
    if user.is_none() && file.is_none() {
        return Ok(None);
    }
    tokio::task::spawn_blocking(move || match (user, file) {
        (_, Some(path)) => from_file(&path).map(Some),
        (Some(user), None) => password_for(user).map(Some),
        (None, None) => Ok(None),
    })
    .await
    .context("reading the credentials stopped")?
}

fn basic(user: String, password: String) -> Credentials {
    Credentials {
        scheme: "basic".into(),
        user,
        password,
    }
}

/// `USER:PASSWORD` from the first line of `path` (`-`: stdin).
fn from_file(path: &Path) -> anyhow::Result<Credentials> {
    let shown = path.display();
    let line = if path == Path::new("-") {
        first_line(std::io::stdin().lock()).context("cannot read the credentials from stdin")?
    } else {
        // Non-blocking open: a FIFO named here must not hang the CLI; only a regular file is read.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .with_context(|| format!("cannot open the credentials file {shown}"))?;
        let meta = f
            .metadata()
            .with_context(|| format!("cannot read the credentials file {shown}"))?;
        if !meta.is_file() {
            bail!(UsageError::new(format!(
                "the credentials file {shown} is not a regular file; give a file holding \
                 USER:PASSWORD on its first line"
            )));
        }
        first_line(std::io::BufReader::new(f))
            .with_context(|| format!("cannot read the credentials file {shown}"))?
    };
    let Some((user, password)) = line.split_once(':') else {
        bail!(UsageError::new(format!(
            "the credentials in {shown} must be USER:PASSWORD on the first line"
        )));
    };
    Ok(basic(user.to_owned(), password.to_owned()))
}

/// The password for `user`: asked on the terminal without echo, or the first line of stdin.
fn password_for(user: String) -> anyhow::Result<Credentials> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        prompt(&format!("password for {user}: "))?
    } else {
        first_line(stdin.lock()).context("cannot read the password from stdin")?
    };
    Ok(basic(user, password))
}

/// The first line of `r` without its line end, bounded in length.
fn first_line(r: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    let n = r.take(MAX_LINE + 1).read_line(&mut line)?;
    if n as u64 > MAX_LINE {
        bail!(UsageError::new(format!(
            "the credentials line is longer than {MAX_LINE} bytes"
        )));
    }
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Asks on the terminal with echo off, and turns echo back on whatever happens.
fn prompt(question: &str) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    let mut stderr = std::io::stderr();
    write!(stderr, "{question}")?;
    stderr.flush()?;
    let saved = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("cannot turn the terminal's echo off")?;
    let answer = first_line(stdin.lock());
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    let answer = answer.context("cannot read the password")?;
    restored.context("cannot turn the terminal's echo back on")?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_ends_at_the_first_newline_and_loses_its_line_end() {
        let got = first_line(std::io::Cursor::new("u:p:w\r\nsecond")).unwrap();
        assert_eq!(got, "u:p:w");
        let long = "x".repeat(usize::try_from(MAX_LINE).unwrap() + 1);
        assert!(first_line(std::io::Cursor::new(long)).is_err());
    }

    #[test]
    fn a_credentials_file_splits_at_the_first_colon_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c");
        std::fs::write(&f, "alice:s3:cret\n").unwrap();
        let c = from_file(&f).unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3:cret"));
        std::fs::write(&f, "no separator\n").unwrap();
        assert!(from_file(&f).is_err());
        assert!(
            from_file(dir.path()).is_err(),
            "a directory is not a credentials file"
        );
    }
}
