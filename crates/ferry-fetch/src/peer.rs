//! The engine's side of the peer cache: asking the origin which version it serves now
//! ([`Fetcher::probe`]), asking a peer whether it holds that version ([`Fetcher::ask_peer`]),
//! and fetching the bytes from a peer ([`PeerSource`] in [`FetchRequest::peer`]).
//!
//! A peer's bytes go through the same staging file, checkpoints and SHA-256 check as the
//! origin's: the fetch only succeeds when the whole content has the SHA-256 the peer advertised
//! (the daemon passes it as [`FetchRequest::sha256`]), so wrong bytes never count as transferred.
//! The checkpoints carry the *origin's* validator, so the origin can continue where a peer
//! stopped. Each piece is also checked, as it arrives, against the piece hashes the peer
//! advertised ([`Fetcher::peer_pieces`]). Not here: which peers to ask, the credential and the
//! fleet's TLS identity, marking peers bad (the daemon).

use std::time::Duration;

use reqwest::header::{self, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::error::FetchError;
use crate::http::{self, content_length, custom_headers, header_str, response_validator};
use crate::{FetchDone, FetchRequest, Fetcher, Run, Source, Validator};
use ferry_core::range;
use ferry_peer::wire;

/// Where to fetch a file's bytes from instead of the origin.
#[derive(Debug, Clone)]
pub struct PeerSource {
    /// The peer's content URL (`http://addr:port/ferry-peer/v1/content/<key>`).
    pub url: String,
    /// `address:port` of the peer, for messages.
    pub peer: String,
    /// Headers for the request (the credential); the daemon signs them per request.
    pub headers: Vec<(String, String)>,
    /// The origin's validator for this content.
    pub validator: Validator,
    /// The content's size.
    pub size: u64,
    /// The piece list the peer advertised: each piece is checked as it arrives, so wrong bytes
    /// stop the fetch at the first wrong piece.
    pub pieces: Option<String>,
}

/// What the origin says it serves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Its validator, if it sent a usable one.
    pub validator: Option<Validator>,
    /// Its size, if declared.
    pub size: Option<u64>,
}

/// A peer's answer to "do you hold this content?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// It does: the SHA-256 and size it advertises.
    Has {
        /// Lowercase hex SHA-256 of the content.
        sha256: String,
        /// Size in bytes.
        size: u64,
    },
    /// It does not (404).
    Missing,
    /// It refused or failed; the words say how (bad credential, busy, unreachable, slow).
    Failed(String),
}

impl Fetcher {
    /// Asks the origin (`HEAD`, redirects followed under the job's rules, its headers and
    /// credentials) which version of `req.url` it serves now.
    pub async fn probe(&self, req: &FetchRequest, timeout: Duration) -> Result<Probe, FetchError> {
        let (resp, url) = self.ask_origin(req, Method::HEAD, &[], timeout).await?;
        if resp.status().as_u16() != 200 {
            return Err(http::status_error(&resp, &url));
        }
        Ok(Probe {
            validator: response_validator(resp.headers()),
            size: content_length(resp.headers())?,
        })
    }

    /// Sends `method` for `req.url` with `extra` headers, following redirects by hand under the
    /// job's rules (scheme downgrades, at most `max_redirects`), with the job's headers and
    /// credentials sent only where the transfer itself would send them.
    async fn ask_origin(
        &self,
        req: &FetchRequest,
        method: Method,
        extra: &[(HeaderName, HeaderValue)],
        timeout: Duration,
    ) -> Result<(reqwest::Response, Url), FetchError> {
        let client = self.client_for(req.proxy.as_deref())?;
        let start = Url::parse(&req.url)
            .map_err(|e| FetchError::invalid_request(format!("invalid URL {:?}: {e}", req.url)))?;
        let headers = custom_headers(&req.headers)?;
        let mut url = start.clone();
        for _ in 0..=req.max_redirects {
            let mut rb = client
                .request(method.clone(), url.clone())
                .header(header::ACCEPT_ENCODING, "identity")
                .timeout(timeout);
            for (n, v) in extra {
                rb = rb.header(n.clone(), v.clone());
            }
            if http::sends_secrets(&start, &url) {
                for (n, v) in &headers {
                    rb = rb.header(n.clone(), v.clone());
                }
                if let Some((user, pass)) = &req.basic_auth {
                    rb = rb.basic_auth(user, Some(pass));
                }
            }
            let resp = rb.send().await.map_err(|e| http::send_error(&e, &url))?;
            if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok((resp, url));
            }
            let Some(next) =
                header_str(resp.headers(), &header::LOCATION).and_then(|l| url.join(l).ok())
            else {
                return Err(http::status_error(&resp, &url));
            };
            http::check_redirect_scheme(&url, &next, req.allow_https_to_http)?;
            url = next;
        }
        Err(FetchError::invalid_response(format!(
            "more than {} redirects starting at {}",
            req.max_redirects,
            http::redact(&start)
        )))
    }

    /// Asks one peer (`HEAD` on its content URL, with `headers`) whether it holds the content,
    /// waiting at most `timeout`. Never goes through a proxy.
    pub async fn ask_peer(
        &self,
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> PeerAnswer {
        let mut rb = self.peer_client.head(url).timeout(timeout);
        for (n, v) in headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return PeerAnswer::Failed(format!("no answer within {timeout:?}"));
            }
            Err(e) if tls_refused(&e) => return PeerAnswer::Failed(TLS_REFUSED.into()),
            Err(e) => {
                let url = Url::parse(url).ok();
                let why =
                    url.map_or_else(|| e.to_string(), |u| http::send_error(&e, &u).description);
                return PeerAnswer::Failed(why);
            }
        };
        match resp.status().as_u16() {
            200 => {
                let h = resp.headers();
                let sha = header_str(h, &HeaderName::from_static(wire::SHA256_HEADER))
                    .map(str::to_ascii_lowercase)
                    .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
                let size = header_str(h, &HeaderName::from_static(wire::SIZE_HEADER))
                    .and_then(|s| s.parse::<u64>().ok());
                match (sha, size) {
                    (Some(sha256), Some(size)) => PeerAnswer::Has { sha256, size },
                    _ => PeerAnswer::Failed("answered without a SHA-256 or size".into()),
                }
            }
            404 => PeerAnswer::Missing,
            401 | 403 => PeerAnswer::Failed(
                "refused our credential (is the fleet secret the same on both hosts?)".into(),
            ),
            503 => PeerAnswer::Failed("busy serving other peers".into()),
            s => PeerAnswer::Failed(format!("answered HTTP {s}")),
        }
    }
}

/// Why a peer's TLS handshake failed, in words: the usual cause is another fleet secret, or a
/// process on the peer's address that is not a fleet member at all.
const TLS_REFUSED: &str = "the TLS handshake failed: it does not hold this fleet's key or refused our credential (is the fleet secret the same on both hosts? is something else listening on its address?)";

/// Whether `err` is a TLS failure (rustls refused the peer, or the peer refused us): a rustls
/// error somewhere in its chain, including inside `io::Error`s (whose `source` skips the error
/// they wrap).
fn tls_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && tls_refused(inner)
    {
        return true;
    }
    err.source().is_some_and(tls_refused)
}

impl Fetcher {
    /// Asks one peer for the piece list of content of `size` bytes (`GET` on its pieces URL,
    /// with `headers`); the words of the error say why it could not be had.
    pub async fn peer_pieces(
        &self,
        url: &str,
        headers: &[(String, String)],
        size: u64,
        timeout: Duration,
    ) -> Result<String, String> {
        let mut rb = self.peer_client.get(url).timeout(timeout);
        for (n, v) in headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) if tls_refused(&e) => return Err(TLS_REFUSED.into()),
            Err(e) => return Err(format!("cannot get its piece hashes: {e}")),
        };
        if resp.status().as_u16() != 200 {
            return Err(format!(
                "answered HTTP {} for its piece hashes",
                resp.status().as_u16()
            ));
        }
        // The list's length follows from the size: a declared length that does not fit is
        // refused before the body is read.
        let want =
            ferry_peer::pieces::count(size).saturating_mul(ferry_peer::pieces::HEX_LEN as u64);
        if content_length(resp.headers())
            .ok()
            .flatten()
            .is_some_and(|l| l != want)
        {
            return Err("sent piece hashes that do not fit the content's size".into());
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("cannot get its piece hashes: {e}"))?;
        let list = String::from_utf8(body.to_vec()).unwrap_or_default();
        if !ferry_peer::pieces::covers(&list, size) {
            return Err("sent piece hashes that do not fit the content's size".into());
        }
        Ok(list)
    }
}

impl Run<'_> {
    /// Fetches the file's bytes from a peer, from the durable offset on, then verifies it.
    pub(crate) async fn fetch_peer(&mut self, peer: &PeerSource) -> Result<FetchDone, FetchError> {
        let pos = self.sink.position();
        if pos > 0 && self.validator.as_ref() != Some(&peer.validator) {
            // The bytes on disk belong to another version than the one the peer holds.
            self.validator = Some(peer.validator.clone());
            self.total = Some(peer.size);
            self.restart().await?;
        }
        self.validator = Some(peer.validator.clone());
        self.total = Some(peer.size);
        let pos = self.sink.position();
        if pos >= peer.size {
            return self.finish().await;
        }
        let url = Url::parse(&peer.url).map_err(|e| {
            FetchError::invalid_request(format!("invalid peer URL {:?}: {e}", peer.url))
        })?;
        let mut headers = Vec::new();
        for (n, v) in &peer.headers {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(n.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(FetchError::invalid_request(format!(
                    "invalid peer header {n:?}"
                )));
            };
            headers.push((n, v));
        }
        let ask = (pos > 0).then_some(pos);
        let mut rb = self
            .client
            .get(url.clone())
            .header(header::ACCEPT_ENCODING, "identity");
        for (n, v) in headers {
            rb = rb.header(n, v);
        }
        if let Some(from) = ask {
            rb = rb.header(header::RANGE, format!("bytes={from}-"));
        }
        let resp = self.dispatch(rb, &url).await?;
        let status = resp.status().as_u16();
        let content_range = match header_str(resp.headers(), &header::CONTENT_RANGE) {
            Some(v) if status == 206 => Some(range::parse_content_range(v).map_err(|e| {
                FetchError::invalid_response(format!("{e} from peer {}", peer.peer))
            })?),
            _ => None,
        };
        match (status, content_range) {
            (200, _) => {
                if pos > 0 {
                    self.restart().await?;
                }
            }
            (206, Some(cr)) if cr.start == pos && cr.total == Some(peer.size) => {}
            (206, _) => {
                return Err(FetchError::invalid_response(format!(
                    "peer {} answered a range that does not start at byte {pos} of {}",
                    peer.peer, peer.size
                )));
            }
            _ => return Err(http::status_error(&resp, &url)),
        }
        self.sink.expect_pieces(peer.pieces.clone());
        let mut source = Source::Http(Box::pin(resp.bytes_stream()));
        self.pump(&mut source, Some(peer.size)).await?;
        self.finish().await
    }
}

impl Fetcher {
    /// Sends a report to a peer (`POST`, with `headers`); the answer does not matter.
    pub async fn tell_peer(&self, url: &str, headers: &[(String, String)], timeout: Duration) {
        let mut rb = self.peer_client.post(url).timeout(timeout);
        for (n, v) in headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        let _ = rb.send().await;
    }
}

/// Bytes of the origin compared with a peer's copy ([`Fetcher::spot_check`]).
pub const SPOT_CHECK_BYTES: u64 = 64 * 1024;

impl Fetcher {
    /// Compares `len` bytes at `offset` of the staged file with the same bytes from the origin
    /// (`Range` + `If-Range` with the version's validator), after a peer supplied the file.
    ///
    /// A peer's SHA-256 only proves the bytes are the ones the peer meant to send; this proves
    /// they are the version the origin serves, against a peer that serves another version
    /// under the right key. `Ok(false)`: they differ, or the origin no longer serves that
    /// version. Errors are the origin's (the file cannot be verified now; retry later).
    pub async fn spot_check(
        &self,
        req: &FetchRequest,
        validator: &Validator,
        offset: u64,
        len: u64,
    ) -> Result<bool, FetchError> {
        if len == 0 {
            return Ok(true);
        }
        let range = format!("bytes={offset}-{}", offset + len - 1);
        let extra = [
            (header::RANGE, HeaderValue::from_str(&range)),
            (
                header::IF_RANGE,
                HeaderValue::from_str(validator.to_header_value()),
            ),
        ];
        let extra: Vec<(HeaderName, HeaderValue)> = extra
            .into_iter()
            .filter_map(|(n, v)| Some((n, v.ok()?)))
            .collect();
        let timeout = req.stall_timeout.max(Duration::from_secs(1));
        let (resp, url) = self.ask_origin(req, Method::GET, &extra, timeout).await?;
        match resp.status().as_u16() {
            206 => {}
            // The whole file instead of the range: the validator no longer matches.
            200 => return Ok(false),
            _ => return Err(http::status_error(&resp, &url)),
        }
        let fits = header_str(resp.headers(), &header::CONTENT_RANGE)
            .and_then(|v| range::parse_content_range(v).ok())
            .is_some_and(|cr| cr.start == offset && cr.len() == len);
        if !fits {
            return Ok(false);
        }
        let origin = resp.bytes().await.map_err(|e| http::body_error(&e))?;
        let (path, identity) = (req.temp_path.clone(), req.identity);
        let ours = crate::safe_open::blocking(identity, move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = crate::safe_open::open_file(&path, crate::safe_open::Access::ReadNoFollow)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
            f.read_exact(&mut buf)?;
            Ok(buf)
        })
        .await
        .map_err(|e| FetchError::invalid_request(format!("the spot check failed: {e}")))?
        .map_err(|e| FetchError::local_io(&req.temp_path, "read", &e))?;
        Ok(origin.as_ref() == ours.as_slice())
    }
}
