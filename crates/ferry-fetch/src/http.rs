//! HTTP(S) fetching: the ranged request, redirects followed by hand, fitting the answer to the
//! bytes on disk (`ferry_core::range`), and classifying every failure.
//!
//! Not here: the body loop, checkpoints and hashing (`lib.rs`, `sink.rs`), or whether and when
//! a failure is retried (the daemon, with `ferry_core::retry`).

use std::time::{Duration, SystemTime};

use ferry_core::range::{self, ResumeDecision};
use ferry_core::retry::{Class, classify_http_status};
use ferry_proto::ErrorContext;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode, Url};

use crate::error::{FetchError, FetchErrorKind};
use crate::{FetchDone, Run, Source, Validator};

/// Headers the engine owns: a custom header may not override them (a custom `Range` or
/// `Accept-Encoding` would corrupt offsets; hop-by-hop headers belong to the connection).
const RESERVED_HEADERS: &[&str] = &[
    "range",
    "if-range",
    "accept-encoding",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
];

/// How many times one fetch may start over because the server's file changed under it.
pub(crate) const MAX_RESTARTS: u32 = 3;

/// The longest URL a message shows whole; a longer one is cut (see [`shorten`]).
pub(crate) const SHOWN_URL_MAX: usize = 256;

/// `url` without user name and password, for messages, cut to [`SHOWN_URL_MAX`].
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        // Only fails for cannot-be-a-base URLs, which carry no credentials anyway.
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    shorten(u.as_str())
}

/// Like [`redact`] for a URL string (shortened as-is when it does not parse).
pub fn redact_url_str(url: &str) -> String {
    Url::parse(url).map_or_else(|_| shorten(url), |u| redact(&u))
}

/// `text` whole when short, else its start and its length: an error description (stored,
/// sent to every client) stays small whatever URL a job names.
pub(crate) fn shorten(text: &str) -> String {
    if text.len() <= SHOWN_URL_MAX {
        return text.to_owned();
    }
    let mut cut = SHOWN_URL_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..cut], text.len())
}

/// Every message in an error's source chain, lowercased, for recognising causes that reqwest
/// does not expose as types (TLS details, the OS error of a refused connection).
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        out.push_str(&err.to_string().to_ascii_lowercase());
        out.push_str(": ");
        cur = err.source();
    }
    out
}

/// hyper's messages (lowercased) for a response head it refuses to parse (`hyper::Error::
/// is_parse` on the client side): a head beyond its size limit (about 400 KiB, so a server
/// sending megabytes of headers costs bounded memory), a bad status line, a malformed header.
const PARSE_ERRORS: &[&str] = &[
    "message head is too large",
    "invalid http version parsed",
    "invalid http header parsed",
    "invalid content-length parsed",
    "unexpected transfer-encoding parsed",
    "invalid http status-code parsed",
];

/// Classifies a failure to get an answer (connect, DNS, TLS, the connection dropping, or an
/// answer that is not HTTP).
pub fn send_error(e: &reqwest::Error, url: &Url) -> FetchError {
    let text = chain_text(e);
    let host = url.host_str().unwrap_or("?");
    let shown = redact(url);
    if e.is_builder() {
        // No request left this host: the URL cannot be written as an HTTP request target
        // (longer than the client's 64 KiB limit, say). The same URL fails the same way on
        // every retry, so this is fatal, not a connection that broke.
        return FetchError::invalid_request(format!(
            "cannot send a request for {shown} ({} bytes): {}; use a shorter URL",
            url.as_str().len(),
            e.without_url_ref()
        ));
    }
    if PARSE_ERRORS.iter().any(|p| text.contains(p)) {
        // The server did answer, with something that is not HTTP. This used to fall through
        // to CONNECTION_RESET ("broke before an answer"), which misnamed the fault. Still
        // transient, as in BITS (a malformed response is retried after the retry delay), and
        // because leftover bytes of an earlier answer on a reused connection look the same.
        return FetchError::new(
            ErrorContext::GeneralTransport,
            FetchErrorKind::MalformedResponse,
            true,
            format!(
                "the answer of {host} for {shown} is not valid HTTP: {}",
                e.without_url_ref()
            ),
        );
    }
    let (code, transient, what) = if e.is_dns() {
        (
            FetchErrorKind::DnsFailed,
            true,
            format!("could not resolve {host}"),
        )
    } else if text.contains("certificate") || text.contains("unknownissuer") {
        // A certificate the trust store rejects will be rejected again: retrying cannot help.
        (
            FetchErrorKind::TlsFailed,
            false,
            format!("the TLS certificate of {host} was rejected"),
        )
    } else if text.contains("tls") || text.contains("handshake") || text.contains("rustls") {
        (
            FetchErrorKind::TlsFailed,
            true,
            format!("the TLS handshake with {host} failed"),
        )
    } else if e.is_connect() {
        (
            FetchErrorKind::ConnectFailed,
            true,
            format!("could not connect to {host}"),
        )
    } else {
        (
            FetchErrorKind::ConnectionReset,
            true,
            format!("the connection to {host} broke before an answer"),
        )
    };
    FetchError::new(
        ErrorContext::GeneralTransport,
        code,
        transient,
        format!("{what} for {shown}: {}", e.without_url_ref()),
    )
}

/// Formats a reqwest error without the URL it embeds (which may hold credentials).
trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut parts = Vec::new();
        let mut cur = std::error::Error::source(self);
        while let Some(err) = cur {
            parts.push(err.to_string());
            cur = err.source();
        }
        if parts.is_empty() {
            "connection error".to_owned()
        } else {
            parts.join(": ")
        }
    }
}

/// Classifies a failure while reading a body: the connection broke mid-transfer.
pub fn body_error(e: &reqwest::Error) -> FetchError {
    FetchError::new(
        ErrorContext::GeneralTransport,
        FetchErrorKind::ConnectionReset,
        true,
        format!("the connection broke mid-transfer: {}", e.without_url_ref()),
    )
}

/// Parses `Retry-After`: delay seconds or an HTTP date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The error for an answer with an error status.
pub fn status_error(resp: &Response, url: &Url) -> FetchError {
    let status = resp.status();
    let code = status.as_u16();
    let transient = matches!(classify_http_status(code), Class::Transient);
    let mut err = FetchError::new(
        ErrorContext::RemoteFile,
        FetchErrorKind::Http(code),
        transient,
        format!(
            "the server answered {code}{} for {}",
            status
                .canonical_reason()
                .map(|r| format!(" {r}"))
                .unwrap_or_default(),
            redact(url)
        ),
    );
    err.http_status = Some(code);
    if matches!(code, 429 | 503) {
        err.retry_after = header_str(resp.headers(), &header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
    }
    err
}

/// A header's value as trimmed text, when present and visible ASCII.
pub fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The validator an answer establishes: a strong ETag, else Last-Modified.
pub(crate) fn response_validator(headers: &HeaderMap) -> Option<Validator> {
    if let Some(etag) = header_str(headers, &header::ETAG)
        && etag.starts_with('"')
        && etag.len() >= 2
    {
        return Some(Validator::ETag(etag.to_owned()));
    }
    header_str(headers, &header::LAST_MODIFIED)
        .filter(|v| !v.is_empty())
        .map(|v| Validator::LastModified(v.to_owned()))
}

/// `Content-Length`, when present and numeric.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>, FetchError> {
    match header_str(headers, &header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| FetchError::invalid_response(format!("invalid Content-Length {v:?}"))),
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn redirect_refused(description: String) -> FetchError {
    FetchError::new(
        ErrorContext::RemoteFile,
        FetchErrorKind::RedirectRefused,
        false,
        description,
    )
}

/// Whether a redirect from `from` to `next` may be followed, judged by scheme alone: to https
/// always, to http only from http or when the job allows https→http, to anything else
/// (`file:`, `ftp:`, `data:` …) never. A separate function so the https→http rule is tested
/// without a TLS server.
pub(crate) fn check_redirect_scheme(
    from: &Url,
    next: &Url,
    allow_https_to_http: bool,
) -> Result<(), FetchError> {
    match next.scheme() {
        "https" => Ok(()),
        "http" if from.scheme() == "http" || allow_https_to_http => Ok(()),
        "http" => Err(redirect_refused(format!(
            "{} redirected from https to http ({}), which the job does not allow",
            redact(from),
            redact(next)
        ))),
        other => Err(redirect_refused(format!(
            "{} redirected to a {other}: URL, which is never followed",
            redact(from)
        ))),
    }
}

/// Whether the job's custom headers and credentials go with a request for `url` when the
/// file's URL is `start`: only to the same origin (scheme, host and port), as curl does with
/// `Authorization`. Custom headers may carry tokens, so a redirect to another port of the same
/// host (another service, maybe another user's), to another host, or down to http gets none.
pub(crate) fn sends_secrets(start: &Url, url: &Url) -> bool {
    url.origin() == start.origin()
}

/// Validates the custom headers once, before any request.
pub fn custom_headers(
    pairs: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, FetchError> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        let n = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            FetchError::invalid_request(format!("invalid custom header name {name:?}"))
        })?;
        if RESERVED_HEADERS.contains(&n.as_str()) {
            continue;
        }
        let v = HeaderValue::from_str(value.trim()).map_err(|_| {
            FetchError::invalid_request(format!("invalid value for custom header {name:?}"))
        })?;
        out.push((n, v));
    }
    Ok(out)
}

/// How sending a request ended.
enum Sent {
    Answer(Response),
    Cancelled,
    Stalled,
    Failed(FetchError),
}

/// What was asked for in one round: the range and the validator sent with it.
pub(crate) struct Ask<'v> {
    /// `Range: bytes=from-to` (`from-` without `to`); `None` sends no `Range` at all.
    pub(crate) range: Option<(u64, Option<u64>)>,
    /// Sent as `If-Range`, only together with a range.
    pub(crate) validator: Option<&'v Validator>,
}

impl Run<'_> {
    /// Fetches an http(s) URL into the sink, resuming when the validator allows it.
    pub(crate) async fn fetch_http(&mut self, url: Url) -> Result<FetchDone, FetchError> {
        let headers = custom_headers(&self.req.headers)?;
        let mut restarts = 0u32;
        loop {
            let pos = self.sink.position();
            // A range is only safe with a validator the server can check (If-Range); without
            // one, the earlier bytes might belong to another version: start over.
            let validator = self
                .validator
                .clone()
                .filter(|v| pos > 0 && v.usable_for_if_range());
            let from = if validator.is_some() { pos } else { 0 };
            let ask = Ask {
                range: validator.is_some().then_some((pos, None)),
                validator: validator.as_ref(),
            };
            let (resp, final_url) = self.send(&url, &headers, &ask).await?;
            let status = resp.status().as_u16();

            if status == 416 && from > 0 {
                let total = header_str(resp.headers(), &header::CONTENT_RANGE)
                    .and_then(range::parse_unsatisfied_range);
                if total == Some(from) {
                    // Every byte is already here (a crash after the last write, before the
                    // final checkpoint): the validator still matched, so the file is whole.
                    self.total = total;
                    return self.finish().await;
                }
                // The remote file is now shorter than our prefix: it changed.
                restarts += 1;
                if restarts > MAX_RESTARTS {
                    return Err(self.unstable(&final_url));
                }
                self.total = None;
                self.validator = None;
                self.restart().await?;
                continue;
            }
            if status != 200 && status != 206 {
                if (200..300).contains(&status) {
                    return Err(FetchError::invalid_response(format!(
                        "the server answered {status} without content for {}",
                        redact(&final_url)
                    )));
                }
                return Err(status_error(&resp, &final_url));
            }

            let resp_validator = response_validator(resp.headers());
            let declared_len = content_length(resp.headers())?;
            let content_range = match header_str(resp.headers(), &header::CONTENT_RANGE) {
                Some(v) if status == 206 => Some(range::parse_content_range(v).map_err(|e| {
                    FetchError::invalid_response(format!("{e} from {}", redact(&final_url)))
                })?),
                _ => None,
            };
            let expected = if from > 0 { self.total } else { None };
            match range::decide_resume(from, status, content_range.as_ref(), expected) {
                ResumeDecision::Invalid(why) => {
                    return Err(FetchError::invalid_response(format!(
                        "{why} ({})",
                        redact(&final_url)
                    )));
                }
                ResumeDecision::Restart if status == 206 => {
                    // The range fits but the size changed: this body is part of another
                    // version. Drop everything and ask for the whole file.
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(self.unstable(&final_url));
                    }
                    self.total = None;
                    self.validator = None;
                    self.restart().await?;
                    continue;
                }
                ResumeDecision::Restart => {
                    // 200 to a ranged request: the range was ignored or the validator changed.
                    self.total = declared_len;
                    self.validator = resp_validator;
                    self.restart().await?;
                }
                ResumeDecision::Append if status == 200 => {
                    self.total = declared_len;
                    self.validator = resp_validator;
                    if pos > 0 {
                        // No range was sent (no usable validator), so the old bytes go.
                        self.restart().await?;
                    }
                }
                ResumeDecision::Append => {
                    self.validator = resp_validator.or(validator.clone());
                    if let Some(total) = content_range.and_then(|c| c.total) {
                        self.total = Some(total);
                    }
                }
            }

            // Where this body must end, in file offsets.
            let end = match content_range {
                Some(cr) => {
                    if declared_len.is_some_and(|n| n != cr.len()) {
                        return Err(FetchError::invalid_response(format!(
                            "Content-Length {} does not match Content-Range {cr} from {}",
                            declared_len.unwrap_or_default(),
                            redact(&final_url)
                        )));
                    }
                    Some(cr.end_exclusive())
                }
                None => declared_len,
            };

            let mut source = Source::Http(Box::pin(resp.bytes_stream()));
            self.pump(&mut source, end).await?;

            // A server may answer a range with less than asked (a capped 206): ask for the
            // rest. Each such round moves forward, so this loop ends.
            if status == 206
                && let Some(total) = self.total
                && self.sink.position() < total
            {
                continue;
            }
            return self.finish().await;
        }
    }

    /// The error for a file that keeps changing under the transfer.
    pub(crate) fn unstable(&self, url: &Url) -> FetchError {
        FetchError::invalid_response(format!(
            "{} changed {MAX_RESTARTS} times during one transfer",
            redact(url)
        ))
    }

    /// Sends one request, bounded by the stall timeout and the cancellation token (both salvage
    /// what was written before returning).
    pub(crate) async fn dispatch(
        &mut self,
        rb: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<Response, FetchError> {
        let stall_at = self.stall_deadline(tokio::time::Instant::now());
        let sent = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Sent::Cancelled,
            r = tokio::time::timeout_at(stall_at, rb.send()) => match r {
                Err(_) => Sent::Stalled,
                Ok(Err(e)) => Sent::Failed(send_error(&e, url)),
                Ok(Ok(resp)) => Sent::Answer(resp),
            },
        };
        match sent {
            Sent::Answer(resp) => Ok(resp),
            Sent::Cancelled => Err(self.salvage(FetchError::cancelled()).await),
            Sent::Stalled => {
                let err = self.stalled_error();
                Err(self.salvage(err).await)
            }
            Sent::Failed(e) => Err(e),
        }
    }

    /// Sends the GET, following redirects by hand; returns the final answer and its URL.
    pub(crate) async fn send(
        &mut self,
        start: &Url,
        headers: &[(HeaderName, HeaderValue)],
        ask: &Ask<'_>,
    ) -> Result<(Response, Url), FetchError> {
        let mut url = start.clone();
        let mut visited = vec![url.clone()];
        loop {
            self.protocol = if url.scheme() == "https" {
                "https"
            } else {
                "http"
            };
            let mut rb = self
                .client
                .get(url.clone())
                .header(header::ACCEPT_ENCODING, "identity");
            if sends_secrets(start, &url) {
                for (n, v) in headers {
                    rb = rb.header(n.clone(), v.clone());
                }
                if let Some((user, pass)) = &self.req.basic_auth {
                    rb = rb.basic_auth(user, Some(pass));
                }
            }
            if let Some((from, to)) = ask.range {
                let spec = match to {
                    Some(to) => format!("bytes={from}-{to}"),
                    None => format!("bytes={from}-"),
                };
                rb = rb.header(header::RANGE, spec);
                if let Some(v) = ask.validator {
                    rb = rb.header(header::IF_RANGE, v.to_header_value());
                }
            }
            let resp = self.dispatch(rb, &url).await?;
            if !is_redirect(resp.status()) {
                return Ok((resp, url));
            }
            let Some(location) = header_str(resp.headers(), &header::LOCATION) else {
                // A redirect status without a target is just an error status.
                return Err(status_error(&resp, &url));
            };
            let next = url.join(location).map_err(|e| {
                redirect_refused(format!(
                    "{} redirected to an invalid location {location:?}: {e}",
                    redact(&url)
                ))
            })?;
            if visited.len() > self.req.max_redirects as usize {
                return Err(redirect_refused(format!(
                    "more than {} redirects starting at {}",
                    self.req.max_redirects,
                    redact(start)
                )));
            }
            check_redirect_scheme(&url, &next, self.req.allow_https_to_http)?;
            if visited.contains(&next) {
                return Err(redirect_refused(format!(
                    "redirect loop: {} leads back to {}",
                    redact(&url),
                    redact(&next)
                )));
            }
            visited.push(next.clone());
            url = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn validators_prefer_strong_etags() {
        let mut h = HeaderMap::new();
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Tue, 01 Jan 2030 00:00:00 GMT"),
        );
        h.insert(header::ETAG, HeaderValue::from_static("W/\"weak\""));
        assert_eq!(
            response_validator(&h),
            Some(Validator::LastModified(
                "Tue, 01 Jan 2030 00:00:00 GMT".into()
            ))
        );
        h.insert(header::ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(
            response_validator(&h),
            Some(Validator::ETag("\"strong\"".into()))
        );
        assert_eq!(response_validator(&HeaderMap::new()), None);
        assert!(!Validator::ETag("W/\"x\"".into()).usable_for_if_range());
    }

    #[test]
    fn urls_are_redacted() {
        let u = Url::parse("http://user:secret@example.test/a").unwrap();
        assert_eq!(redact(&u), "http://example.test/a");
        assert_eq!(redact_url_str("https://u:p@h/x"), "https://h/x");
        assert_eq!(redact_url_str("not a url"), "not a url");
        let long = format!("http://h/{}", "é".repeat(40_000));
        let shown = redact_url_str(&long);
        assert!(shown.len() < SHOWN_URL_MAX + 40, "{}", shown.len());
        assert!(shown.starts_with("http://h/") && shown.ends_with(" bytes in all)"));
    }

    #[test]
    fn https_to_http_redirects_are_refused_unless_allowed() {
        let https = Url::parse("https://user:pw@example.test/a").unwrap();
        let http = Url::parse("http://example.test/b").unwrap();
        let err = check_redirect_scheme(&https, &http, false).unwrap_err();
        assert_eq!(err.kind, FetchErrorKind::RedirectRefused);
        assert_eq!(err.context, ErrorContext::RemoteFile);
        assert!(!err.transient);
        assert!(
            err.description.contains("from https to http") && !err.description.contains("pw"),
            "{}",
            err.description
        );
        // Allowed per job (`allow_https_to_http`); upgrades and same-scheme hops always are.
        assert!(check_redirect_scheme(&https, &http, true).is_ok());
        assert!(check_redirect_scheme(&http, &https, false).is_ok());
        assert!(check_redirect_scheme(&http, &http, false).is_ok());
        assert!(check_redirect_scheme(&https, &https, false).is_ok());
        // Other schemes never, whatever the job allows.
        for other in ["file:///etc/passwd", "ftp://example.test/x", "data:,x"] {
            let next = Url::parse(other).unwrap();
            for allow in [false, true] {
                let err = check_redirect_scheme(&https, &next, allow).unwrap_err();
                assert_eq!(err.kind, FetchErrorKind::RedirectRefused, "{other}");
                assert!(!err.transient);
            }
        }
    }

    #[test]
    fn secrets_go_to_the_files_origin_only() {
        let start = Url::parse("https://files.example:8443/a").unwrap();
        let yes = [
            "https://files.example:8443/b?x",
            "https://FILES.example:8443/",
        ];
        for u in yes {
            assert!(sends_secrets(&start, &Url::parse(u).unwrap()), "{u}");
        }
        let no = [
            "https://files.example:9443/a",
            "https://files.example/a",
            "http://files.example:8443/a",
            "https://other.example:8443/a",
            "https://sub.files.example:8443/a",
        ];
        for u in no {
            assert!(!sends_secrets(&start, &Url::parse(u).unwrap()), "{u}");
        }
        // The default port written out is the same origin.
        let plain = Url::parse("http://127.0.0.1/x").unwrap();
        assert!(sends_secrets(
            &plain,
            &Url::parse("http://127.0.0.1:80/y").unwrap()
        ));
        assert!(!sends_secrets(
            &plain,
            &Url::parse("http://127.0.0.2/x").unwrap()
        ));
    }

    #[test]
    fn reserved_headers_are_dropped_and_bad_ones_refused() {
        let h = custom_headers(&[
            ("X-Token".into(), "abc".into()),
            ("Range".into(), "bytes=0-1".into()),
            ("Accept-Encoding".into(), "gzip".into()),
        ])
        .unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0.as_str(), "x-token");
        let err = custom_headers(&[("bad name".into(), "x".into())]).unwrap_err();
        assert_eq!(err.kind, FetchErrorKind::InvalidRequest);
    }
}
