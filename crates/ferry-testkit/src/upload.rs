//! Real upload servers for upload tests: `ferry-upload-server` (BITS, in-process on a thread
//! of its own, so it serves whatever the test's runtime does) and a tus 1.0 server
//! (`@tus/server` from npm under node, `tus/` next to this crate; `.ci/run` installs it).

// Test support: a server that cannot start should fail the test with its reason.
#![allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The real `ferry-upload-server` with `/upload` → `TMP/up`, until dropped.
pub struct UploadServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its directories (`up/` holds the uploads) and config.
    pub tmp: tempfile::TempDir,
    /// The extra `/upload` directory keys it was started with.
    dir_keys: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UploadServer {
    /// Starts with no limits.
    pub fn start() -> UploadServer {
        UploadServer::start_with("")
    }

    /// Starts with extra keys for the `/upload` directory (`max_fragment_size = 10000`, …).
    pub fn start_with(dir_keys: &str) -> UploadServer {
        let tmp = tempfile::tempdir().expect("a temp dir");
        std::fs::create_dir(tmp.path().join("up")).expect("the upload directory");
        let mut s = UploadServer {
            addr: ([127, 0, 0, 1], 0).into(),
            tmp,
            dir_keys: dir_keys.to_owned(),
            stop: None,
            thread: None,
        };
        s.spawn();
        s
    }

    /// Serves on `self.addr` (port 0 the first time: any).
    fn spawn(&mut self) {
        let config = self.tmp.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{}\"\n[[directory]]\nurl_prefix = \"/upload\"\npath = \"{}\"\n{}\n",
                self.addr,
                self.dir().display(),
                self.dir_keys
            ),
        )
        .expect("the server's config");
        let cfg = ferry_upload_server::Config::load(&config).expect("a valid config");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime for the upload server");
            rt.block_on(async move {
                let server = ferry_upload_server::Server::bind(cfg)
                    .await
                    .expect("the upload server binds");
                addr_tx
                    .send(server.local_addr().expect("its address"))
                    .expect("the test waits");
                server
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
            // Dropping the runtime aborts every connection mid-request, as a kill would.
            rt.shutdown_background();
        });
        self.addr = addr_rx.recv().expect("the upload server started");
        self.stop = Some(stop);
        self.thread = Some(thread);
    }

    /// Stops the server abruptly (every connection is dropped mid-request, nothing is
    /// answered or cleaned up: what stays is what it had on disk, as after `kill -9`) and
    /// starts it again on the same address and directories.
    pub fn crash_and_restart(&mut self) {
        self.halt();
        self.spawn();
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The URL of `name` in the upload directory.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/upload/{name}", self.addr)
    }

    /// The upload directory.
    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("up")
    }

    /// The file that landed as `name`, if any.
    pub fn landed(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir().join(name)).ok()
    }

    /// How many sessions the server holds on disk.
    pub fn sessions(&self) -> usize {
        std::fs::read_dir(self.dir().join(".ferry-upload-sessions")).map_or(0, |d| d.count())
    }
}

impl Drop for UploadServer {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A real tus 1.0 server (`@tus/server` with a file store) under node, until dropped.
pub struct TusServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Where it keeps uploads: one data file per upload plus its `.json`.
    pub dir: tempfile::TempDir,
}

impl TusServer {
    /// Starts one, or returns `None` after printing `SKIPPED: …` where node or the npm
    /// packages are missing; with `FERRY_REQUIRE_TUS=1` (CI) that is a failure instead.
    /// `FERRY_TUS_NODE_MODULES` names another `node_modules` to use.
    pub fn start(test: &str) -> Option<TusServer> {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tus");
        let modules = std::env::var_os("FERRY_TUS_NODE_MODULES")
            .map(PathBuf::from)
            .unwrap_or_else(|| here.join("node_modules"));
        let required = std::env::var_os("FERRY_REQUIRE_TUS").is_some_and(|v| v == "1");
        let missing = |why: String| {
            assert!(!required, "{test}: FERRY_REQUIRE_TUS=1 but {why}");
            eprintln!(
                "SKIPPED: {test}: {why} (install it with `npm ci --prefix {}`)",
                here.display()
            );
            None
        };
        if !modules.join("@tus/server").is_dir() {
            return missing(format!("no @tus/server in {}", modules.display()));
        }
        let dir = tempfile::tempdir().expect("a temp dir");
        let child = Command::new("node")
            .arg(here.join("server.js"))
            .arg(dir.path())
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return missing(format!("cannot run node: {e}")),
        };
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the tus server's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the tus server did not start: {line:?}"))
            .to_owned();
        Some(TusServer { child, addr, dir })
    }

    /// The creation endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/files", self.addr)
    }

    /// The uploads the server holds (data files; their `.json` metadata is not counted).
    pub fn uploads(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_none())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
