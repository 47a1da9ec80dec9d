//! The handler registry (BITS notification CLSID): which handlers each uid registered, which
//! connection is attached to each name, and the activation in progress, if any. At most one
//! activation runs per (uid, name); callers that need the handler meanwhile join it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use ferry_rpc::Peer;
use ferry_store::HandlerRow;
use tokio::sync::watch;

/// How an activation ended (or that it has not yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The program was started and has not attached yet.
    Pending,
    /// A connection attached.
    Attached,
    /// The program could not start, exited, or did not attach in time.
    Failed(String),
}

/// One (uid, name).
#[derive(Debug, Default)]
pub struct Slot {
    /// The registration, if the user registered the name.
    pub registered: Option<HandlerRow>,
    /// The connection serving the name, while open.
    pub attached: Option<Weak<Peer>>,
    /// The token and progress of the activation running now.
    pub activation: Option<(String, watch::Sender<Activation>)>,
}

/// Every handler slot, keyed by (uid, name).
#[derive(Debug, Default)]
pub struct Registry {
    slots: HashMap<(u32, String), Slot>,
}

impl Registry {
    /// Loads registrations from the store.
    pub fn load(rows: Vec<HandlerRow>) -> Registry {
        let mut r = Registry::default();
        for row in rows {
            let (uid, name) = (row.uid, row.name.clone());
            r.slot(uid, &name).registered = Some(row);
        }
        r
    }

    /// The slot of (uid, name), created if missing.
    pub fn slot(&mut self, uid: u32, name: &str) -> &mut Slot {
        self.slots.entry((uid, name.to_owned())).or_default()
    }

    /// The slot of (uid, name), if any.
    pub fn get(&self, uid: u32, name: &str) -> Option<&Slot> {
        self.slots.get(&(uid, name.to_owned()))
    }

    /// The attached connection, if it is still open.
    pub fn attached(&self, uid: u32, name: &str) -> Option<Arc<Peer>> {
        self.get(uid, name)?
            .attached
            .as_ref()?
            .upgrade()
            .filter(|p| !p.is_closed())
    }

    /// Whether notifications for this handler can go anywhere (attached, or can be started).
    pub fn available(&self, uid: u32, name: &str) -> bool {
        self.attached(uid, name).is_some()
            || self.get(uid, name).is_some_and(|s| s.registered.is_some())
    }

    /// Registrations of one uid.
    pub fn registered_by(&self, uid: u32) -> Vec<HandlerRow> {
        let mut v: Vec<HandlerRow> = self
            .slots
            .iter()
            .filter(|((u, _), _)| *u == uid)
            .filter_map(|(_, s)| s.registered.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// What the registrations of `uid` other than `name` cost (`name` is being replaced).
    pub fn usage_except(&self, uid: u32, name: &str) -> crate::limits::HandlerUsage {
        let mut usage = crate::limits::HandlerUsage::default();
        for ((u, n), s) in &self.slots {
            if let Some(row) = s.registered.as_ref().filter(|_| *u == uid && n != name) {
                usage.count += 1;
                usage.argv_bytes = usage
                    .argv_bytes
                    .saturating_add(crate::limits::argv_bytes(&row.argv));
            }
        }
        usage
    }

    /// Forgets a closed connection wherever it was attached.
    pub fn detach(&mut self, peer_id: u64) {
        for s in self.slots.values_mut() {
            let gone = s
                .attached
                .as_ref()
                .and_then(Weak::upgrade)
                .is_none_or(|p| p.id() == peer_id || p.is_closed());
            if gone {
                s.attached = None;
            }
        }
    }
}
