//! Supervising the daemon's long-running tasks (scheduler, notifier, sweeper): each must run
//! as long as the daemon does. One that ends early (a panic) would leave a daemon that accepts
//! jobs it never runs or notifications it never delivers, so the daemon stops instead, with a
//! log line naming the task and [`crate::EXIT_TASK_DIED`], and its service manager restarts it.

use crate::error::DaemonError;

/// Why a supervised task ended, from its join result.
pub fn task_died(task: &'static str, result: Result<(), tokio::task::JoinError>) -> DaemonError {
    let why = match result {
        Ok(()) => "it returned while the daemon was running".to_owned(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("it panicked: {message}")
        }
        Err(e) => format!("it was cancelled: {e}"),
    };
    DaemonError::TaskDied { task, why }
}

/// A test-only fault: in debug builds, `FERRY_TEST_PANIC_TASK=<task>` makes that task panic
/// where it calls this, so tests can check that a dead task ends the daemon. Release builds
/// never read the variable.
#[cfg(debug_assertions)]
#[allow(clippy::panic)]
pub fn test_fault(task: &str) {
    if std::env::var_os("FERRY_TEST_PANIC_TASK").is_some_and(|v| v == task) {
        panic!("FERRY_TEST_PANIC_TASK={task}: injected test fault");
    }
}

/// Release builds: no test faults.
#[cfg(not(debug_assertions))]
pub fn test_fault(_task: &str) {}
