//! Writing a handler program: what ferryd starts on demand when a job whose `notify_handler`
//! names it has a notification due and no connection serves that name (BITS notification CLSID).
//!
//! ferryd runs the registered argv with `FERRY_SOCKET`, `FERRY_HANDLER` (the name) and
//! `FERRY_ACTIVATION` (a one-time token) in the environment. [`serve`] reads them, connects,
//! calls `handler.attach {name, token}`, answers callbacks with the given [`Callback`] for every
//! job of that handler, and returns once nothing has happened for a while, so the program can
//! exit; ferryd starts it again when the next notification is due.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use ferry_client::{Callback, CallbackContext, CallbackFuture, proto::Job};
//! struct Completer;
//! impl Callback for Completer {
//!     fn job_transferred(&self, ctx: CallbackContext, job: Job) -> CallbackFuture {
//!         Box::pin(async move {
//!             ctx.client.complete(&job.job_id).await?;
//!             Ok(())
//!         })
//!     }
//! }
//! # async fn run() -> Result<(), ferry_client::ClientError> {
//! if ferry_client::handler::activated() {
//!     ferry_client::handler::serve(Arc::new(Completer)).await?;
//! }
//! # Ok(())
//! # }
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{Callback, Client, ClientError};

/// The socket ferryd listens on (also read by every client).
pub const ENV_SOCKET: &str = "FERRY_SOCKET";
/// The handler name ferryd started the program as.
pub const ENV_HANDLER: &str = "FERRY_HANDLER";
/// The one-time activation token.
pub const ENV_ACTIVATION: &str = "FERRY_ACTIVATION";

/// How [`serve_with`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Return after this long without a callback starting, once none is running.
    pub idle: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            idle: Duration::from_secs(5),
        }
    }
}

impl ServeOptions {
    /// Options with this idle period.
    pub fn idle(idle: Duration) -> ServeOptions {
        ServeOptions { idle }
    }
}

/// What ferryd's handler activation put in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// `FERRY_SOCKET`
    pub socket: PathBuf,
    /// `FERRY_HANDLER`
    pub name: String,
    /// `FERRY_ACTIVATION`
    pub token: String,
}

impl Activation {
    /// Reads the activation from this process's environment.
    pub fn from_env() -> Result<Activation, ClientError> {
        Activation::from_vars(|k| std::env::var_os(k))
    }

    /// Reads the activation through `get` (the environment, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Result<Activation, ClientError> {
        let var = |key: &str| -> Result<OsString, ClientError> {
            get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                ClientError::NotActivated(format!(
                    "not started by ferryd handler activation: {key} is not set \
                     (a program that is already running attaches with Client::attach_handler)"
                ))
            })
        };
        let text = |key: &str| -> Result<String, ClientError> {
            var(key)?
                .into_string()
                .map_err(|_| ClientError::NotActivated(format!("{key} is not valid UTF-8")))
        };
        // The token is checked first: it is what only an activation sets.
        let token = text(ENV_ACTIVATION)?;
        let name = text(ENV_HANDLER)?;
        let socket = PathBuf::from(var(ENV_SOCKET)?);
        Ok(Activation {
            socket,
            name,
            token,
        })
    }
}

/// Whether ferryd started this process as a handler (`FERRY_ACTIVATION` is set).
pub fn activated() -> bool {
    std::env::var_os(ENV_ACTIVATION).is_some_and(|v| !v.is_empty())
}

/// [`serve_with`] with the default options (5 s idle).
pub async fn serve(callback: Arc<dyn Callback>) -> Result<(), ClientError> {
    serve_with(callback, ServeOptions::default()).await
}

/// Serves the activation this process was started for: connects to `FERRY_SOCKET`, attaches as
/// `FERRY_HANDLER` with the token `FERRY_ACTIVATION`, and answers callbacks with `callback`
/// until idle (see [`serve_on`]).
pub async fn serve_with(
    callback: Arc<dyn Callback>,
    opts: ServeOptions,
) -> Result<(), ClientError> {
    let activation = Activation::from_env()?;
    let client = Client::connect_to(&activation.socket).await?;
    serve_on(
        client,
        &activation.name,
        Some(&activation.token),
        callback,
        opts,
    )
    .await
}

/// Attaches `client` as handler `name` and answers callbacks with `callback` for every job it
/// serves. Returns once no callback has started for `opts.idle` and none is running, or when
/// the daemon closes the connection; the connection is closed on return. `token` is `None` for
/// a program that attaches without being started by ferryd.
pub async fn serve_on(
    client: Client,
    name: &str,
    token: Option<&str>,
    callback: Arc<dyn Callback>,
    opts: ServeOptions,
) -> Result<(), ClientError> {
    // Installed before attaching: owed notifications are sent as soon as the daemon attaches.
    client.set_default_callback(Some(callback));
    let attached = client.attach_handler(name, token).await;
    if let Err(e) = attached {
        client.set_default_callback(None);
        client.close();
        return Err(e);
    }
    wait_idle(&client, opts.idle).await;
    client.set_default_callback(None);
    client.close();
    Ok(())
}

/// Resolves once no callback has started for `idle` while none ran, or the connection closed.
async fn wait_idle(client: &Client, idle: Duration) {
    let mut activity = client.activity();
    loop {
        let busy = activity.borrow_and_update().in_flight > 0;
        tokio::select! {
            () = client.closed() => return,
            changed = activity.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(idle), if !busy => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn activation_reads_the_three_variables() {
        let a = Activation::from_vars(vars(&[
            ("FERRY_SOCKET", "/run/user/1/ferry/ferryd.sock"),
            ("FERRY_HANDLER", "h"),
            ("FERRY_ACTIVATION", "tok"),
        ]))
        .unwrap();
        assert_eq!(
            a,
            Activation {
                socket: "/run/user/1/ferry/ferryd.sock".into(),
                name: "h".into(),
                token: "tok".into()
            }
        );
    }

    #[test]
    fn missing_variables_say_not_activated() {
        let e = Activation::from_vars(vars(&[])).unwrap_err();
        assert!(matches!(e, ClientError::NotActivated(_)));
        let text = e.to_string();
        assert!(
            text.contains("not started by ferryd handler activation"),
            "{text}"
        );
        assert!(text.contains("FERRY_ACTIVATION"), "{text}");
        let e = Activation::from_vars(vars(&[("FERRY_ACTIVATION", "t"), ("FERRY_HANDLER", "h")]))
            .unwrap_err();
        assert!(e.to_string().contains("FERRY_SOCKET"), "{e}");
        let e = Activation::from_vars(vars(&[("FERRY_ACTIVATION", "")])).unwrap_err();
        assert!(e.to_string().contains("FERRY_ACTIVATION"), "{e}");
    }

    #[test]
    fn default_idle_is_five_seconds() {
        assert_eq!(ServeOptions::default().idle, Duration::from_secs(5));
    }
}
