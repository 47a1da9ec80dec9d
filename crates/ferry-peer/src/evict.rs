//! Which cache entries leave: first every entry unused for longer than the maximum age, then the
//! least recently used until the rest fits the size limit (BITS peer cache: LRU, content age
//! reset on access).

/// What eviction needs to know about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Size in bytes.
    pub size: u64,
    /// Last publication or use (any clock unit, the same as `now` and the maximum age).
    pub last_access: u64,
}

/// Why an entry was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Unused for longer than the maximum age.
    Age,
    /// The cache is over its size limit and this was the least recently used.
    Size,
}

impl Reason {
    /// The word used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Age => "age",
            Reason::Size => "size",
        }
    }
}

/// Indexes into `entries` to evict, each with its reason, so that no entry older than `max_age`
/// remains and the total fits `max_size`.
pub fn plan(entries: &[Meta], max_size: u64, max_age: u64, now: u64) -> Vec<(usize, Reason)> {
    let mut out = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if now.saturating_sub(e.last_access) > max_age {
            out.push((i, Reason::Age));
        } else {
            kept.push(i);
        }
    }
    let mut total: u64 = kept.iter().map(|&i| entries[i].size).sum();
    // Oldest use first; ties by index, so the plan is deterministic.
    kept.sort_by_key(|&i| (entries[i].last_access, i));
    for i in kept {
        if total <= max_size {
            break;
        }
        total -= entries[i].size;
        out.push((i, Reason::Size));
    }
    out
}

/// When the next entry ages out, for a timer: `None` with no entries.
pub fn next_expiry(entries: &[Meta], max_age: u64) -> Option<u64> {
    entries
        .iter()
        .map(|e| e.last_access.saturating_add(max_age).saturating_add(1))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(size: u64, last_access: u64) -> Meta {
        Meta { size, last_access }
    }

    #[test]
    fn age_then_least_recently_used() {
        let entries = [m(10, 100), m(10, 50), m(10, 300), m(10, 200)];
        // max age 150 at now 300: the entry used at 100 is 200 s old → out by age.
        let plan = plan(&entries, 15, 150, 300);
        assert_eq!(
            plan,
            vec![(0, Reason::Age), (1, Reason::Age), (3, Reason::Size)]
        );
    }

    #[test]
    fn fits_means_nothing_to_do() {
        assert!(plan(&[m(5, 1), m(5, 2)], 10, 100, 10).is_empty());
        assert_eq!(next_expiry(&[m(5, 1), m(5, 2)], 100), Some(102));
        assert_eq!(next_expiry(&[], 100), None);
    }

    proptest! {
        #[test]
        fn the_plan_fits_and_keeps_the_most_recent(
            entries in proptest::collection::vec((0u64..1000, 0u64..1000), 0..40),
            max_size in 0u64..5000,
            max_age in 0u64..1000,
        ) {
            let entries: Vec<Meta> = entries.into_iter().map(|(s, t)| m(s, t)).collect();
            let now = 1000;
            let out = plan(&entries, max_size, max_age, now);
            let gone: std::collections::HashSet<usize> = out.iter().map(|(i, _)| *i).collect();
            prop_assert_eq!(gone.len(), out.len(), "an entry evicted twice");
            let kept: Vec<&Meta> = entries.iter().enumerate()
                .filter(|(i, _)| !gone.contains(i)).map(|(_, e)| e).collect();
            prop_assert!(kept.iter().map(|e| e.size).sum::<u64>() <= max_size);
            prop_assert!(kept.iter().all(|e| now - e.last_access <= max_age));
            // Nothing evicted for size was used more recently than something kept.
            for (i, r) in &out {
                if *r == Reason::Size {
                    prop_assert!(kept.iter().all(|k| k.last_access >= entries[*i].last_access));
                }
            }
        }
    }
}
