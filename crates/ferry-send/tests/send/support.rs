//! A driver that plays the caller's part (commit every state, retry transient errors), as
//! the daemon does, and a fault-injecting proxy; the real servers are `ferry_testkit::upload`'s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_fetch::{FetchError, FetcherOptions};
use ferry_send::{
    Protocol, ProtocolChoice, SendDone, SendEvent, SendRequest, Sender, ServerState, SourceIdentity,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Deterministic content.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 11) as u8))
        .collect()
}

/// A source file in `dir`.
pub fn source(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// A request to upload `path` to `url`.
pub fn request(url: &str, path: &Path, protocol: ProtocolChoice) -> SendRequest {
    let f = std::fs::File::open(path).unwrap();
    let id = SourceIdentity::of(&f.metadata().unwrap());
    let mut r = SendRequest::new(url, f, id);
    r.protocol = protocol;
    r.source_path = Some(path.to_owned());
    r.content_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    r.stall_timeout = Duration::from_secs(20);
    r
}

pub fn sender() -> Sender {
    Sender::new(&FetcherOptions::default()).unwrap()
}

/// What the caller committed, in order.
#[derive(Default, Debug)]
pub struct Committed {
    /// Every `Created` state.
    pub created: Vec<ServerState>,
    /// The last state committed.
    pub last: Option<ServerState>,
    /// The protocol a probe found.
    pub probed: Option<Protocol>,
}

/// One send, committing as the daemon does; the state committed last is in `c`.
pub async fn send_once(
    s: &Sender,
    req: &SendRequest,
    c: &Arc<Mutex<Committed>>,
    cancel: &CancellationToken,
) -> Result<SendDone, FetchError> {
    send_hooked(s, req, c, cancel, |_, _| {}).await
}

/// [`send_once`], calling `on_ack(n, cancel)` after the `n`-th acknowledged offset (from 1).
pub async fn send_hooked(
    s: &Sender,
    req: &SendRequest,
    c: &Arc<Mutex<Committed>>,
    cancel: &CancellationToken,
    mut on_ack: impl FnMut(usize, &CancellationToken) + Send + 'static,
) -> Result<SendDone, FetchError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (c2, cancel2) = (c.clone(), cancel.clone());
    let consumer = tokio::spawn(async move {
        let mut acks = 0;
        while let Some(ev) = rx.recv().await {
            let mut c = c2.lock().unwrap();
            match ev {
                SendEvent::Created { state, commit } => {
                    c.created.push(state.clone());
                    c.last = Some(state);
                    commit.committed();
                }
                SendEvent::Acked { state } => {
                    c.last = Some(state);
                    acks += 1;
                    on_ack(acks, &cancel2);
                }
                SendEvent::Probed { protocol } => c.probed = Some(protocol),
                SendEvent::Progress { .. } => {}
            }
        }
    });
    let r = s.send(req, &tx, cancel).await;
    drop(tx);
    consumer.await.unwrap();
    r
}

/// Sends until done or fatal, resuming from the committed state after each transient error
/// (at most `attempts`). Returns the result and every transient error seen.
pub async fn send_until_done(
    s: &Sender,
    mut req: SendRequest,
    c: &Arc<Mutex<Committed>>,
    attempts: usize,
) -> (Result<SendDone, FetchError>, Vec<FetchError>) {
    let mut transient = Vec::new();
    for _ in 0..attempts {
        req.resume = c.lock().unwrap().last.clone();
        if let Some(p) = c.lock().unwrap().probed {
            req.protocol = ProtocolChoice::Only(p);
        }
        match send_once(s, &req, c, &CancellationToken::new()).await {
            Err(e) if e.transient => transient.push(e),
            r => return (r, transient),
        }
    }
    panic!("not done after {attempts} attempts: {transient:?}");
}

pub use ferry_testkit::upload::{TusServer, UploadServer};

/// What the hostile proxy does to one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward the head and this many body bytes, then close both connections.
    Cut(usize),
    /// Forward, then add this to the answer's offset header (`BITS-Received-Content-Range`,
    /// `Upload-Offset`), clamped at zero.
    Lie(i64),
    /// Answer this instead of forwarding (the body is read and dropped).
    Answer(u16, Vec<(&'static str, String)>),
    /// Forward, then replace (or add) these headers in the answer.
    Extend(Vec<(&'static str, String)>),
}

/// A fault for the `skip`+1-th request matching `method` and (if set) `packet`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: &'static str,
    /// BITS: the `BITS-Packet-Type`; `None` matches any.
    pub packet: Option<&'static str>,
    pub skip: usize,
    pub times: usize,
    pub fault: Fault,
}

impl Rule {
    pub fn new(method: &'static str, packet: Option<&'static str>, fault: Fault) -> Rule {
        Rule {
            method,
            packet,
            skip: 0,
            times: 1,
            fault,
        }
    }
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }
}

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The head: request line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }
}

/// A fault-injecting HTTP/1.1 proxy in front of `upstream`.
pub struct Proxy {
    pub addr: SocketAddr,
    pub rules: Arc<Mutex<Vec<Rule>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let rules: Arc<Mutex<Vec<Rule>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r2, s2) = (rules.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((c, _)) = l.accept().await else { return };
                let (r, s, up) = (r2.clone(), s2.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(c, up, r, s).await;
                });
            }
        });
        Proxy { addr, rules, seen }
    }

    pub fn add(&self, r: Rule) {
        self.rules.lock().unwrap().push(r);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = vec![0u8; 65536];
        let n = self.s.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// A head (up to the blank line), or `None` at a clean end.
    async fn head(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i + 4]).into_owned();
                self.buf.drain(..i + 4);
                return Ok(Some(head));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    async fn exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// A chunked body, raw (chunk sizes included).
    async fn chunked(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break self.buf.drain(..i + 2).collect::<Vec<u8>>();
                }
                if !self.fill().await? {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&line)
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or(""),
                16,
            )
            .unwrap_or(0);
            out.extend_from_slice(&line);
            let data = self.exact(size + 2).await?;
            out.extend_from_slice(&data);
            if size == 0 {
                return Ok(out);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header_of(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

async fn serve(
    client: TcpStream,
    upstream: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> std::io::Result<()> {
    let mut c = Conn {
        s: client,
        buf: Vec::new(),
    };
    let mut u = Conn {
        s: TcpStream::connect(&upstream).await?,
        buf: Vec::new(),
    };
    while let Some(head) = c.head().await? {
        let method = head.split(' ').next().unwrap_or("").to_owned();
        let len: usize = header_of(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let packet = header_of(&head, "bits-packet-type");
        let fault = {
            let mut rs = rules.lock().unwrap();
            let i = rs.iter().position(|r| {
                r.method.eq_ignore_ascii_case(&method)
                    && r.packet.is_none_or(|p| {
                        packet.as_deref().is_some_and(|q| q.eq_ignore_ascii_case(p))
                    })
            });
            match i {
                Some(i) if rs[i].skip > 0 => {
                    rs[i].skip -= 1;
                    None
                }
                Some(i) => {
                    let f = rs[i].fault.clone();
                    rs[i].times -= 1;
                    if rs[i].times == 0 {
                        rs.remove(i);
                    }
                    Some(f)
                }
                None => None,
            }
        };
        if let Some(Fault::Cut(n)) = fault {
            let part = c.exact(n.min(len)).await?;
            u.s.write_all(head.as_bytes()).await?;
            u.s.write_all(&part).await?;
            u.s.flush().await?;
            // Both connections close: the server sees a body cut short, the client a reset.
            return Ok(());
        }
        let body = c.exact(len).await?;
        seen.lock().unwrap().push(Seen {
            head: head.clone(),
            body: body.clone(),
        });
        if let Some(Fault::Answer(status, headers)) = &fault {
            let mut r = format!("HTTP/1.1 {status} Refused\r\n");
            for (n, v) in headers {
                r.push_str(&format!("{n}: {v}\r\n"));
            }
            r.push_str("Content-Length: 0\r\n\r\n");
            c.s.write_all(r.as_bytes()).await?;
            continue;
        }
        u.s.write_all(head.as_bytes()).await?;
        u.s.write_all(&body).await?;
        let Some(mut rhead) = u.head().await? else {
            return Ok(());
        };
        let status: u16 = rhead
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let rbody = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
            Vec::new()
        } else if header_of(&rhead, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            u.chunked().await?
        } else {
            let n: usize = header_of(&rhead, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            u.exact(n).await?
        };
        if let Some(Fault::Lie(delta)) = fault {
            rhead = rhead
                .split("\r\n")
                .map(|l| match l.split_once(':') {
                    Some((n, v))
                        if n.eq_ignore_ascii_case("bits-received-content-range")
                            || n.eq_ignore_ascii_case("upload-offset") =>
                    {
                        let v: i64 = v.trim().parse().unwrap_or(0);
                        format!("{n}: {}", (v + delta).max(0))
                    }
                    _ => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\r\n");
        }
        if let Some(Fault::Extend(extra)) = &fault {
            let mut lines: Vec<String> = rhead
                .trim_end_matches("\r\n")
                .split("\r\n")
                .filter(|l| {
                    !extra.iter().any(|(n, _)| {
                        l.split_once(':')
                            .is_some_and(|(h, _)| h.trim().eq_ignore_ascii_case(n))
                    })
                })
                .map(str::to_owned)
                .collect();
            for (n, v) in extra {
                lines.push(format!("{n}: {v}"));
            }
            rhead = lines.join("\r\n") + "\r\n\r\n";
        }
        c.s.write_all(rhead.as_bytes()).await?;
        c.s.write_all(&rbody).await?;
    }
    Ok(())
}
