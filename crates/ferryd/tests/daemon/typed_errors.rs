//! Typed errors at the daemon's edges: a client's deadline on a daemon that does not answer is
//! reported as a timeout (the connection is still open), and owner calls on a job that does not
//! exist answer `not_found`, never a made-up state.

use std::time::Duration;

use ferry_client::ClientError;
use ferry_proto::params::HelloParams;
use ferry_proto::{ErrorCode, method};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::daemon;

/// Resumes a stopped daemon when dropped, so a failed assertion never leaves it stopped.
struct Continue(Pid);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

/// A daemon stopped with SIGSTOP keeps its socket open but answers nothing: the client's
/// deadline must come back as `Timeout`, not as `Disconnected`, and once the daemon runs again
/// the same connection answers.
#[tokio::test]
async fn issue_12_client_deadline_on_a_stopped_daemon_is_a_timeout_not_disconnected() {
    let d = daemon();
    let c = d.client().await;
    let pid = Pid::from_raw(i32::try_from(d.pid()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let resume = Continue(pid);
    let call = c.call_timeout::<method::Hello>(HelloParams::default(), Duration::from_millis(500));
    let got = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("call_timeout must return by itself once its deadline passed");
    match got {
        Err(ClientError::Timeout { method: m, after }) => {
            assert_eq!(m, method::HELLO);
            assert_eq!(after, Duration::from_millis(500));
        }
        other => panic!("expected ClientError::Timeout, got {other:?}"),
    }
    let msg = ClientError::Timeout {
        method: method::HELLO.into(),
        after: Duration::from_millis(500),
    }
    .to_string();
    assert!(
        msg.contains("did not answer") && msg.contains(method::HELLO),
        "{msg}"
    );
    drop(resume);
    let hello = tokio::time::timeout(Duration::from_secs(10), c.hello())
        .await
        .expect("the daemon answers again once it runs");
    assert!(hello.is_ok(), "{hello:?}");
}

/// Every owner call that moves a job answers `not_found` for a job id that does not exist.
#[tokio::test]
async fn issue_12_owner_calls_on_a_missing_job_answer_not_found() {
    let d = daemon();
    let c = d.client().await;
    let missing = "00000000-0000-4000-8000-000000000000";
    let results = [
        ("resume", c.resume(missing).await.map(|_| ())),
        ("suspend", c.suspend(missing).await.map(|_| ())),
        ("cancel", c.cancel(missing).await.map(|_| ())),
        ("complete", c.complete(missing).await.map(|_| ())),
        (
            "set_validation",
            c.set_validation(missing, 0, false).await.map(|_| ()),
        ),
    ];
    for (what, r) in results {
        let e = r.expect_err(what);
        let e = e.daemon_error().unwrap_or_else(|| panic!("{what}: {e:?}"));
        assert_eq!(e.code, ErrorCode::NOT_FOUND.0, "{what}: {e:?}");
    }
}
