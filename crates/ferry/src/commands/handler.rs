//! `ferry handler add|list|remove`: the programs ferryd starts to deliver a job's notifications
//! (BITS notification CLSID), and the rule for a program's argv shared with
//! `ferry set --notify-cmdline`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ferry_client::proto::method;
use ferry_client::proto::params::{Empty, HandlerInfo, HandlerListResult};
use serde_json::{Value, json};

use super::Ctx;
use crate::cli::{HandlerAddArgs, HandlerArgs, HandlerCommand, HandlerNameArg};
use crate::exit_code;
use crate::output;
use crate::usage::UsageError;

/// Makes `argv[0]` absolute, because ferryd runs it without a shell and without a `PATH`
/// search. A relative PROGRAM must be a file under `cwd` (`is_file`); an absolute one is kept
/// as it is. When it is not, the error suggests what `on_path` finds for a bare name.
pub fn absolute_argv(
    mut argv: Vec<String>,
    cwd: &Path,
    is_file: impl Fn(&Path) -> bool,
    on_path: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Vec<String>, UsageError> {
    let Some(program) = argv.first_mut() else {
        return Err(UsageError::new("give the PROGRAM to run after `--`"));
    };
    if program.is_empty() {
        return Err(UsageError::new("the PROGRAM after `--` is empty"));
    }
    if Path::new(program.as_str()).is_absolute() {
        return Ok(argv);
    }
    // `components` drops `.` segments, so `./notify.sh` becomes `<cwd>/notify.sh`.
    let joined: PathBuf = cwd.join(program.as_str()).components().collect();
    if !is_file(&joined) {
        let mut msg = format!(
            "program {program} is not a file in the current directory ({}); give its absolute \
             path: ferryd runs it without a shell and does not search PATH",
            cwd.display()
        );
        if !program.contains('/')
            && let Some(found) = on_path(program)
        {
            msg.push_str(&format!(" (PATH has {})", found.display()));
        }
        return Err(UsageError::new(msg));
    }
    let Some(text) = joined.to_str() else {
        return Err(UsageError::new(format!(
            "the path of {program} is not valid UTF-8"
        )));
    };
    *program = text.to_owned();
    Ok(argv)
}

/// The first file called `name` in the directories of `PATH` (only for error hints).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// [`absolute_argv`] against the current directory and the real file system.
pub fn resolve_argv(argv: Vec<String>) -> anyhow::Result<Vec<String>> {
    let cwd = super::cwd()?;
    Ok(absolute_argv(argv, &cwd, Path::is_file, find_on_path)?)
}

/// An argv as one line, quoting the words a shell would split or expand.
pub fn argv_text(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `ferry handler …`.
pub async fn run(ctx: &Ctx, a: HandlerArgs) -> anyhow::Result<u8> {
    match a.command {
        HandlerCommand::Add(a) => add(ctx, a).await,
        HandlerCommand::List => list(ctx).await,
        HandlerCommand::Remove(a) => remove(ctx, a).await,
    }
}

/// `handler.list` as the daemon answered it.
async fn list_raw(client: &ferry_client::Client) -> anyhow::Result<Value> {
    client
        .call_json::<method::HandlerList>(Empty {})
        .await
        .context("cannot list handlers")
}

fn decode_list(raw: &Value) -> anyhow::Result<Vec<HandlerInfo>> {
    let r: HandlerListResult =
        serde_json::from_value(raw.clone()).context("unexpected handler list from ferryd")?;
    Ok(r.handlers)
}

/// Registers the handler and prints it as the daemon keeps it (default timeout filled in).
async fn add(ctx: &Ctx, a: HandlerAddArgs) -> anyhow::Result<u8> {
    let argv = resolve_argv(a.argv)?;
    let client = ctx.client().await?;
    client
        .register_handler(&a.name, argv.clone(), a.activation_timeout)
        .await
        .with_context(|| format!("cannot register handler {}", a.name))?;
    let raw = list_raw(&client).await?;
    let stored = raw
        .get("handlers")
        .and_then(Value::as_array)
        .and_then(|hs| hs.iter().find(|h| h["name"] == a.name.as_str()))
        .cloned()
        // Removed again by someone else meanwhile: show what was registered.
        .unwrap_or_else(
            || json!({"name": a.name, "argv": argv, "activation_timeout_s": a.activation_timeout}),
        );
    if ctx.json {
        output::json(&stored)?;
    } else {
        let timeout = stored["activation_timeout_s"]
            .as_u64()
            .map_or_else(String::new, |s| format!(" ({s}s to attach)"));
        outln!(
            "registered handler {}: {}{timeout}",
            a.name,
            argv_text(&argv)
        )?;
    }
    Ok(exit_code::OK)
}

/// Prints the caller's handlers (`--json`: the daemon's `{handlers}` answer).
async fn list(ctx: &Ctx) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    let raw = list_raw(&client).await?;
    if ctx.json {
        output::json(&raw)?;
        return Ok(exit_code::OK);
    }
    let rows: Vec<Vec<String>> = decode_list(&raw)?
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                format!("{}s", h.activation_timeout_s),
                argv_text(&h.argv),
            ]
        })
        .collect();
    outln!("{}", output::table(&["NAME", "TIMEOUT", "COMMAND"], &rows))?;
    Ok(exit_code::OK)
}

/// Unregisters the handler.
async fn remove(ctx: &Ctx, a: HandlerNameArg) -> anyhow::Result<u8> {
    let client = ctx.client().await?;
    // The daemon's unregister is idempotent; the user who names a handler that is not there
    // has a typo to hear about, not `removed`.
    let known = decode_list(&list_raw(&client).await?)?;
    if !known.iter().any(|h| h.name == a.name) {
        return Err(exit_code::Coded::not_found(format!(
            "no handler named {} is registered (see `ferry handler list`)",
            a.name
        ))
        .into());
    }
    client
        .unregister_handler(&a.name)
        .await
        .with_context(|| format!("cannot remove handler {}", a.name))?;
    if ctx.json {
        output::json(&json!({"name": a.name, "removed": true}))?;
    } else {
        outln!("removed handler {}", a.name)?;
    }
    Ok(exit_code::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn resolve(words: &[&str]) -> Result<Vec<String>, UsageError> {
        absolute_argv(
            argv(words),
            Path::new("/home/u/work"),
            |p| p == Path::new("/home/u/work/bin/notify.sh"),
            |name| (name == "curl").then(|| PathBuf::from("/usr/bin/curl")),
        )
    }

    #[test]
    fn relative_programs_become_absolute() {
        assert_eq!(
            resolve(&["./bin/notify.sh", "--job", "x y"]).unwrap(),
            argv(&["/home/u/work/bin/notify.sh", "--job", "x y"])
        );
        assert_eq!(
            resolve(&["bin/notify.sh"]).unwrap(),
            argv(&["/home/u/work/bin/notify.sh"])
        );
    }

    #[test]
    fn absolute_programs_are_kept() {
        assert_eq!(resolve(&["/opt/x", "a"]).unwrap(), argv(&["/opt/x", "a"]));
    }

    #[test]
    fn missing_programs_are_a_usage_error_with_a_hint() {
        let e = resolve(&["curl", "-s"]).unwrap_err().0;
        assert!(e.contains("not a file in the current directory"), "{e}");
        assert!(e.contains("does not search PATH"), "{e}");
        assert!(e.contains("PATH has /usr/bin/curl"), "{e}");
        let e = resolve(&["nothing-here"]).unwrap_err().0;
        assert!(!e.contains("PATH has"), "{e}");
        assert!(resolve(&[]).is_err());
        assert!(resolve(&[""]).is_err());
    }

    #[test]
    fn argv_text_quotes_what_a_shell_would_split() {
        assert_eq!(
            argv_text(&argv(&["/bin/x", "a b", "", "it's", "k=v"])),
            r"/bin/x 'a b' '' 'it'\''s' k=v"
        );
    }
}
