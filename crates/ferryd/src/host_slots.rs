//! The per-host connection cap across all jobs (`[daemon] connections_per_host`): however many
//! jobs and files want one host, at most that many transfers talk to it at once.
//! `ferry_core::hosts` keeps the count and decides; this holds it under a lock, wakes waiting
//! transfers when a slot is given back, and tells the daemon ([`ShowWaiting`]) to show a job
//! waiting (`waiting.reason` `host_busy`) for as long as any of its transfers does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_core::hosts::{self, Take};
use tokio::sync::Notify;

/// The slots of every host, shared by all transfers.
#[derive(Debug)]
pub struct HostSlots {
    slots: Mutex<hosts::HostSlots>,
    /// Woken whenever a slot is given back.
    freed: Notify,
    /// Transfers of each job waiting for a slot now.
    waiting_jobs: Mutex<HashMap<String, usize>>,
}

/// A slot of one host, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Arc<HostSlots>,
    host: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.lock().give(&self.host);
        self.owner.freed.notify_waiters();
    }
}

/// The key a URL's connections are counted under (`None` for `file://`: no connection).
pub fn host_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    hosts::host_key(url.host_str(), url.port_or_known_default())
}

impl HostSlots {
    /// Slots for `cap` transfers per host.
    pub fn new(cap: usize) -> Arc<HostSlots> {
        Arc::new(HostSlots {
            slots: Mutex::new(hosts::HostSlots::new(cap)),
            freed: Notify::new(),
            waiting_jobs: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, hosts::HostSlots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting_jobs(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.waiting_jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot of `host` if one is free now.
    pub fn try_take(self: &Arc<Self>, host: &str) -> Option<Slot> {
        match self.lock().take(host) {
            Take::Granted => Some(Slot {
                owner: self.clone(),
                host: host.to_owned(),
            }),
            Take::Wait { .. } => None,
        }
    }

    /// A slot of `host`, waiting for one to be given back while all are taken. Dropping the
    /// future gives up the wait and takes nothing.
    pub async fn take(self: &Arc<Self>, host: &str) -> Slot {
        loop {
            // Registered before the check, so a slot given back in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_take(host) {
                return slot;
            }
            freed.await;
        }
    }

    /// A slot of `host` for a transfer of job `job_id`, waiting while all are taken. While any
    /// transfer of the job waits, `shown` is told so (`true` when the first starts waiting,
    /// `false` when the last stops, also when its wait is given up by dropping the future).
    pub async fn take_for(
        self: &Arc<Self>,
        job_id: &str,
        host: &str,
        shown: &dyn ShowWaiting,
    ) -> Slot {
        if let Some(slot) = self.try_take(host) {
            return slot;
        }
        let _waiting = Waiting::start(self, job_id, shown);
        self.take(host).await
    }
}

/// How a job shows that its transfers wait for a host slot (its `waiting.reason`
/// [`hosts::WAIT_REASON`]); the daemon implements it over its jobs.
pub trait ShowWaiting: Send + Sync {
    /// The job's transfers started (`true`) or stopped (`false`) waiting for a host slot.
    fn show(&self, job_id: &str, waiting: bool);
}

/// One transfer's wait: counted per job, so the job shows it while any of its transfers waits.
struct Waiting<'a> {
    slots: &'a HostSlots,
    job_id: &'a str,
    shown: &'a dyn ShowWaiting,
}

impl<'a> Waiting<'a> {
    fn start(slots: &'a HostSlots, job_id: &'a str, shown: &'a dyn ShowWaiting) -> Waiting<'a> {
        let first = {
            let mut w = slots.waiting_jobs();
            let n = w.entry(job_id.to_owned()).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            shown.show(job_id, true);
        }
        Waiting {
            slots,
            job_id,
            shown,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let last = {
            let mut w = self.slots.waiting_jobs();
            match w.get_mut(self.job_id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    w.remove(self.job_id);
                    true
                }
                None => false,
            }
        };
        if last {
            self.shown.show(self.job_id, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_count_by_host_and_port() {
        assert_eq!(
            host_of("http://Example.com/a").as_deref(),
            Some("example.com:80")
        );
        assert_eq!(
            host_of("https://example.com:8443/a").as_deref(),
            Some("example.com:8443")
        );
        assert_eq!(host_of("file:///tmp/a"), None);
    }

    /// Records what the job would show.
    #[derive(Default)]
    struct Shown(Mutex<Vec<(String, bool)>>);

    impl ShowWaiting for Shown {
        fn show(&self, job_id: &str, waiting: bool) {
            self.0.lock().unwrap().push((job_id.to_owned(), waiting));
        }
    }

    #[tokio::test]
    async fn a_job_shows_the_wait_while_any_of_its_transfers_waits() {
        let slots = HostSlots::new(1);
        let shown = Arc::new(Shown::default());
        let held = slots.take_for("j", "h:80", &*shown).await;
        assert!(
            shown.0.lock().unwrap().is_empty(),
            "a free slot shows nothing"
        );
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (slots, shown) = (slots.clone(), shown.clone());
                tokio::spawn(async move {
                    drop(slots.take_for("j", "h:80", &*shown).await);
                })
            })
            .collect();
        // Both wait (the second one's wait adds nothing to what the job shows).
        while slots.waiting_jobs().get("j").copied() != Some(2) {
            tokio::task::yield_now().await;
        }
        assert_eq!(*shown.0.lock().unwrap(), [("j".to_owned(), true)]);
        drop(held);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(
            *shown.0.lock().unwrap(),
            [("j".to_owned(), true), ("j".to_owned(), false)]
        );
        // A wait given up (the future dropped) stops showing too.
        let held = slots.try_take("h:80").unwrap();
        let given_up = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            slots.take_for("k", "h:80", &*shown),
        )
        .await;
        assert!(given_up.is_err());
        assert_eq!(
            shown.0.lock().unwrap()[2..],
            [("k".to_owned(), true), ("k".to_owned(), false)]
        );
        drop(held);
    }

    #[tokio::test]
    async fn a_waiting_take_gets_the_slot_given_back() {
        let slots = HostSlots::new(1);
        let first = slots.try_take("h:80").expect("free");
        assert!(slots.try_take("h:80").is_none());
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.take("h:80").await })
        };
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
            .await
            .expect("woken when the slot came back")
            .unwrap();
        assert!(slots.try_take("h:80").is_none(), "the waiter holds it");
        drop(second);
        assert!(slots.try_take("h:80").is_some());
    }
}
