//! Shared setup: a server, a scratch directory, a fetcher, and a runner that collects events.

use std::path::PathBuf;
use std::time::Duration;

use ferry_fetch::{
    FetchDone, FetchError, FetchEvent, FetchRequest, Fetcher, FetcherOptions, staging,
};
use ferry_testkit::content::TestContent;
use ferry_testkit::http::TestServer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// No test may take longer than this; a hang is a failure, not a stuck CI run.
pub const LIMIT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub server: TestServer,
    pub dir: tempfile::TempDir,
    pub fetcher: Fetcher,
}

pub struct Outcome {
    pub result: Result<FetchDone, FetchError>,
    pub events: Vec<FetchEvent>,
}

impl Outcome {
    pub fn checkpoints(&self) -> Vec<(u64, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                FetchEvent::Checkpoint {
                    offset, restarted, ..
                } => Some((*offset, *restarted)),
                FetchEvent::Progress { .. } => None,
            })
            .collect()
    }

    pub fn last_checkpoint(&self) -> FetchEvent {
        self.events
            .iter()
            .rev()
            .find(|e| matches!(e, FetchEvent::Checkpoint { .. }))
            .cloned()
            .expect("a checkpoint")
    }

    pub fn restarted(&self) -> bool {
        self.checkpoints().iter().any(|(_, r)| *r)
    }

    pub fn err(&self) -> &FetchError {
        match &self.result {
            Err(e) => e,
            Ok(done) => panic!("expected an error, got {done:?}"),
        }
    }

    pub fn done(&self) -> &FetchDone {
        match &self.result {
            Ok(d) => d,
            Err(e) => panic!("expected success, got {e:?}"),
        }
    }
}

impl Harness {
    pub async fn new() -> Harness {
        Harness {
            server: TestServer::start().await,
            dir: tempfile::tempdir().unwrap(),
            fetcher: Fetcher::new(FetcherOptions::default()).unwrap(),
        }
    }

    /// Serves `len` bytes of seeded content at `path`.
    pub fn serve(&self, path: &str, seed: u64, len: usize) -> TestContent {
        let c = TestContent::new(seed, len);
        self.server.add_file(path, c.bytes.clone());
        c
    }

    /// A request for `url` into a fresh staging file, with test-friendly limits, hashing.
    pub fn request_url(&self, url: String) -> FetchRequest {
        let temp = staging::create_temp(self.dir.path()).unwrap();
        let mut req = FetchRequest::new(url, temp);
        req.stall_timeout = Duration::from_secs(10);
        // Every test checks the content's SHA-256 as well.
        req.hash = true;
        req
    }

    /// A request for `path` on the test server.
    pub fn request(&self, path: &str) -> FetchRequest {
        self.request_url(self.server.url(path))
    }

    pub async fn run(&self, req: &FetchRequest) -> Outcome {
        self.run_with(req, &CancellationToken::new()).await
    }

    pub async fn run_with(&self, req: &FetchRequest, cancel: &CancellationToken) -> Outcome {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = tokio::time::timeout(LIMIT, self.fetcher.fetch(req, &tx, cancel))
            .await
            .expect("fetch finished in time");
        drop(tx);
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        Outcome { result, events }
    }
}

pub fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
