//! Notifying the server application when an upload's last byte is in (the back-end half of
//! the protocol): an HTTP POST naming the file (by reference) or carrying it (by value), whose
//! answer decides the reply the client downloads and whether the file is also put at the
//! destination.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::NotificationType;
use crate::protocol::Refusal;

/// Largest reply accepted from the server application (BITS's own reply limit).
pub const MAX_REPLY: usize = 1024 * 1024;

/// Where the client gets its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplySource {
    /// The application named a URL of its own (`BITS-Static-Response-URL`).
    Static(String),
    /// The reply is the file the server stored in the session (`reply`).
    Stored,
    /// There is no reply.
    None,
}

/// What the server application's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAnswer {
    /// The reply.
    pub reply: ReplySource,
    /// Whether the upload is also put at the destination on Close-Session.
    pub copy_to_destination: bool,
}

/// Interprets the application's answer: only 200 is success; a static URL wins over a body
/// (by value) or a reply file (by reference).
pub fn interpret(
    kind: NotificationType,
    status: u16,
    static_url: Option<&str>,
    copy_header: bool,
    body_len: usize,
    reply_file_len: u64,
) -> Result<AppAnswer, Refusal> {
    if status != 200 {
        return Err(Refusal::Application(format!("it answered HTTP {status}")));
    }
    let reply = match (static_url, kind) {
        (Some(u), _) if !u.trim().is_empty() => ReplySource::Static(u.trim().to_owned()),
        (_, NotificationType::ByValue) if body_len > 0 => ReplySource::Stored,
        (_, NotificationType::ByReference) if reply_file_len > 0 => ReplySource::Stored,
        _ => ReplySource::None,
    };
    Ok(AppAnswer {
        reply,
        copy_to_destination: copy_header,
    })
}

/// One notification to send.
pub struct Notification<'a> {
    /// How.
    pub kind: NotificationType,
    /// Where.
    pub url: &'a str,
    /// The URL the client uploaded to (`BITS-Original-Request-URL`).
    pub original_url: &'a str,
    /// The uploaded data.
    pub data: &'a Path,
    /// Where a reply goes.
    pub reply: &'a Path,
    /// How long to wait for the whole answer.
    pub timeout: Duration,
}

/// Sends the notification and returns what the application answered. A by-value reply body
/// is stored at `n.reply`.
pub async fn notify(client: &reqwest::Client, n: &Notification<'_>) -> Result<AppAnswer, Refusal> {
    let send = async {
        let mut req = client
            .post(n.url)
            .header("BITS-Original-Request-URL", n.original_url);
        req = match n.kind {
            NotificationType::ByReference => req
                .header("BITS-Request-DataFile-Name", n.data.display().to_string())
                .header("BITS-Response-DataFile-Name", n.reply.display().to_string())
                .header("Content-Length", "0")
                .body(Vec::new()),
            _ => {
                let f = tokio::fs::File::open(n.data)
                    .await
                    .map_err(|e| crate::store::io_refusal(&e))?;
                let len = f
                    .metadata()
                    .await
                    .map_err(|e| crate::store::io_refusal(&e))?
                    .len();
                req.header("Content-Length", len.to_string()).body(f)
            }
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Refusal::Application(format!("cannot reach it: {e}")))?;
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let static_url = header("bits-static-response-url");
        let copy = header("bits-copy-file-to-destination").is_some();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| Refusal::Application(format!("its answer broke off: {e}")))?;
            if body.len() + chunk.len() > MAX_REPLY {
                return Err(Refusal::Application(
                    "its reply is larger than 1 MiB".into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if n.kind == NotificationType::ByValue && !body.is_empty() && static_url.is_none() {
            tokio::fs::write(n.reply, &body)
                .await
                .map_err(|e| crate::store::io_refusal(&e))?;
        }
        let reply_len = match n.kind {
            NotificationType::ByReference => {
                tokio::fs::metadata(n.reply).await.map_or(0, |m| m.len())
            }
            _ => 0,
        };
        if reply_len > MAX_REPLY as u64 {
            return Err(Refusal::Application(
                "its reply is larger than 1 MiB".into(),
            ));
        }
        interpret(
            n.kind,
            status,
            static_url.as_deref(),
            copy,
            body.len(),
            reply_len,
        )
    };
    tokio::time::timeout(n.timeout, send)
        .await
        .unwrap_or(Err(Refusal::ApplicationTimeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_replies() {
        let v = NotificationType::ByValue;
        let r = NotificationType::ByReference;
        assert_eq!(
            interpret(v, 200, None, false, 5, 0).unwrap().reply,
            ReplySource::Stored
        );
        assert_eq!(
            interpret(v, 200, None, false, 0, 0).unwrap().reply,
            ReplySource::None
        );
        assert_eq!(
            interpret(r, 200, Some("http://x/r"), true, 0, 9).unwrap(),
            AppAnswer {
                reply: ReplySource::Static("http://x/r".into()),
                copy_to_destination: true
            }
        );
        assert_eq!(
            interpret(r, 200, None, false, 0, 9).unwrap().reply,
            ReplySource::Stored
        );
        assert!(matches!(
            interpret(v, 403, None, false, 0, 0),
            Err(Refusal::Application(_))
        ));
    }
}
