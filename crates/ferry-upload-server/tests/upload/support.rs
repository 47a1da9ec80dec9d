//! Starts the real `ferry-upload-server` binary on 127.0.0.1 with a config in a temp dir, and
//! talks raw HTTP/1.1 to it, one keep-alive connection per [`Conn`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const GUID: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// A running server and its directories.
pub struct Server {
    child: Child,
    pub addr: String,
    pub tmp: tempfile::TempDir,
    pub config: PathBuf,
}

impl Server {
    /// The upload directory of the default config (`/upload`).
    pub fn upload_dir(&self) -> PathBuf {
        self.tmp.path().join("up")
    }

    /// The session directory of `/upload`.
    pub fn sessions(&self) -> PathBuf {
        self.upload_dir().join(".ferry-upload-sessions")
    }

    /// A session's data file.
    pub fn data_file(&self, session: &str) -> PathBuf {
        let dir = session.trim_matches(['{', '}']).to_ascii_lowercase();
        self.sessions().join(dir).join("data")
    }

    /// How many sessions are on disk.
    pub fn session_count(&self) -> usize {
        std::fs::read_dir(self.sessions()).map_or(0, |d| d.count())
    }

    /// A new connection.
    pub async fn conn(&self) -> Conn {
        Conn {
            s: TcpStream::connect(&self.addr).await.unwrap(),
            buf: Vec::new(),
            host: self.addr.clone(),
            auth: None,
        }
    }

    /// `kill -9` and start again with the same config and directories.
    pub fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, addr) = spawn(&self.config);
        self.child = child;
        self.addr = addr;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-upload-server"))
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the server did not start: {line:?}"))
        .to_owned();
    (child, addr)
}

/// Starts a server whose config is `listen` on port 0, `/upload` → `TMP/up` with the extra
/// directory keys `dir_keys`, and `extra` appended (more tables).
pub fn start_with(dir_keys: &str, extra: &str) -> Server {
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path().join("up");
    std::fs::create_dir(&up).unwrap();
    let config = tmp.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n{extra}\n[[directory]]\nurl_prefix = \"/upload\"\npath = \"{}\"\n{dir_keys}\n",
            up.display()
        ),
    )
    .unwrap();
    let (child, addr) = spawn(&config);
    Server {
        child,
        addr,
        tmp,
        config,
    }
}

/// The default server: no limits, no overwrite, no notification.
pub fn start() -> Server {
    start_with("", "")
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// The head exactly as received (status line and headers, CRLFs included).
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts an error Ack with this status and HRESULT.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.head);
        assert_eq!(
            self.header("BITS-Packet-Type"),
            Some("Ack"),
            "{}",
            self.head
        );
        assert_eq!(self.header("BITS-Error-Code"), Some(code), "{}", self.head);
        assert_eq!(
            self.header("BITS-Error-Context"),
            Some("0x5"),
            "{}",
            self.head
        );
    }
}

/// One HTTP/1.1 connection.
pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    host: String,
    /// An `Authorization` value sent with every `BITS_POST`.
    pub auth: Option<String>,
}

impl Conn {
    /// Sends raw bytes and reads one response; must not take more than 10 s.
    pub async fn raw(&mut self, bytes: &[u8]) -> Resp {
        tokio::time::timeout(Duration::from_secs(10), async {
            self.s.write_all(bytes).await.unwrap();
            self.read().await
        })
        .await
        .expect("the server did not answer within 10 s")
    }

    /// Sends raw bytes without waiting for an answer.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    /// Reads one response.
    pub async fn read(&mut self) -> Resp {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end + 4].to_vec()).unwrap();
                let mut lines = head.split("\r\n");
                let status: u16 = lines
                    .next()
                    .unwrap()
                    .split(' ')
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap();
                let headers: Vec<(String, String)> = lines
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (n, v) = l.split_once(':').unwrap();
                        (n.to_owned(), v.trim().to_owned())
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                while self.buf.len() < end + 4 + len {
                    self.fill().await;
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Resp {
                    status,
                    head,
                    headers,
                    body,
                };
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        // On the heap: a 64 KiB array in every nested future overflows the test's stack.
        let mut chunk = vec![0u8; 65536];
        let n = self.s.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// A `BITS_POST` with these headers (Content-Length added from the body).
    pub async fn post(&mut self, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = format!("BITS_POST {url} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(a) = &self.auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes).await
    }

    /// A plain GET (of a reply URL's path).
    pub async fn get(&mut self, path: &str) -> Resp {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        self.raw(req.as_bytes()).await
    }

    /// Create-Session; returns the session id.
    pub async fn create(&mut self, url: &str) -> String {
        let r = self.create_resp(url).await;
        assert_eq!(r.status, 200, "{}", r.head);
        r.header("BITS-Session-Id").unwrap().to_owned()
    }

    pub async fn create_resp(&mut self, url: &str) -> Resp {
        self.post(
            url,
            &[
                ("BITS-Packet-Type", "Create-Session"),
                ("BITS-Supported-Protocols", GUID),
            ],
            b"",
        )
        .await
    }

    /// A fragment `first..first+data.len()` of a `total`-byte file.
    pub async fn fragment(
        &mut self,
        url: &str,
        session: &str,
        first: u64,
        total: u64,
        data: &[u8],
    ) -> Resp {
        let range = format!("bytes {first}-{}/{total}", first + data.len() as u64 - 1);
        self.fragment_range(url, session, &range, data).await
    }

    /// A fragment with this `Content-Range` value, whatever the body.
    pub async fn fragment_range(
        &mut self,
        url: &str,
        session: &str,
        range: &str,
        data: &[u8],
    ) -> Resp {
        self.post(
            url,
            &[
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", session),
                ("Content-Range", range),
            ],
            data,
        )
        .await
    }

    /// Close-Session or Cancel-Session.
    pub async fn end(&mut self, url: &str, session: &str, kind: &str) -> Resp {
        self.post(
            url,
            &[("BITS-Packet-Type", kind), ("BITS-Session-Id", session)],
            b"",
        )
        .await
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Deterministic content.
pub fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
