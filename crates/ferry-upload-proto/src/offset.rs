//! The one rule both upload protocols share: what the client does with the offset a server
//! says it holds. The server's offset wins, forward or backward (BITS `BITS-Received-Content-
//! Range`, tus `Upload-Offset`), within what is possible: never beyond the file, never beyond
//! the bytes this client has sent, and not backwards for ever.

/// How many answers may move the offset back or leave it where it was before the upload gets
/// further than ever; then the server is losing data and the attempt ends (transient).
pub const MAX_REGRESSIONS: u32 = 8;

/// Where the client stands in one server-side upload (a BITS session, a tus upload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    /// The file's size.
    pub total: u64,
    /// The offset the server acknowledged last: the next byte to send.
    pub acked: u64,
    /// The end of the furthest byte range this client sent to this upload; `None` when it is
    /// unknown (an upload resumed from the store: an earlier run may have sent more than it
    /// recorded as acknowledged).
    pub high_water: Option<u64>,
    /// The furthest offset the server ever acknowledged.
    pub best: u64,
    /// Answers that moved back or stood still since the offset last passed `best`.
    pub regressions: u32,
}

/// How an acknowledged offset moved the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Further than before.
    Forward,
    /// Where it was.
    Same,
    /// Back: the server lost bytes; they are sent again.
    Backward,
}

/// An acknowledged offset the client refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    /// The server claims more bytes than the file has.
    #[error("the server claims {offset} bytes of a {total}-byte file")]
    BeyondTotal {
        /// What it claimed.
        offset: u64,
        /// The file's size.
        total: u64,
    },
    /// The server claims bytes this client never sent: what lands would not be the file.
    #[error("the server claims {offset} bytes but was only sent {sent}")]
    BeyondSent {
        /// What it claimed.
        offset: u64,
        /// The end of what was sent.
        sent: u64,
    },
    /// The server keeps moving the offset back without getting further.
    #[error("the server moved the offset back {0} times in a row without progress")]
    KeepsRegressing(u32),
}

impl OffsetError {
    /// Whether trying again later may help: a server that lost data may recover; one that
    /// claims bytes it cannot have is broken or hostile, and what it stored is not the file.
    pub fn transient(&self) -> bool {
        matches!(self, OffsetError::KeepsRegressing(_))
    }
}

impl Tracker {
    /// A new server-side upload: nothing sent, nothing acknowledged.
    pub fn fresh(total: u64) -> Tracker {
        Tracker {
            total,
            acked: 0,
            high_water: Some(0),
            best: 0,
            regressions: 0,
        }
    }

    /// An upload resumed from the offset the store recorded.
    pub fn resumed(total: u64, acked: u64) -> Tracker {
        let acked = acked.min(total);
        Tracker {
            total,
            acked,
            high_water: None,
            best: acked,
            regressions: 0,
        }
    }

    /// Whether every byte is acknowledged.
    pub fn complete(&self) -> bool {
        self.acked >= self.total
    }

    /// The next range to send, `first..end` (exclusive), at most `size` bytes; `None` when
    /// everything is acknowledged.
    pub fn next(&self, size: u64) -> Option<(u64, u64)> {
        if self.complete() {
            return None;
        }
        let end = self.acked.saturating_add(size.max(1)).min(self.total);
        Some((self.acked, end))
    }

    /// Records that bytes up to `end` (exclusive) are about to be sent.
    pub fn sending(&mut self, end: u64) {
        if let Some(h) = self.high_water.as_mut() {
            *h = (*h).max(end);
        }
    }

    /// Takes the offset the server acknowledged. On an error the tracker is unchanged.
    pub fn server_says(&mut self, offset: u64) -> Result<Move, OffsetError> {
        if offset > self.total {
            return Err(OffsetError::BeyondTotal {
                offset,
                total: self.total,
            });
        }
        if let Some(sent) = self.high_water
            && offset > sent
        {
            return Err(OffsetError::BeyondSent { offset, sent });
        }
        let m = match offset.cmp(&self.acked) {
            std::cmp::Ordering::Greater => Move::Forward,
            std::cmp::Ordering::Equal => Move::Same,
            std::cmp::Ordering::Less => Move::Backward,
        };
        if offset > self.best {
            self.best = offset;
            self.regressions = 0;
        } else if m != Move::Forward {
            if self.regressions + 1 > MAX_REGRESSIONS {
                return Err(OffsetError::KeepsRegressing(self.regressions + 1));
            }
            self.regressions += 1;
        }
        // Once the server has answered, whatever it holds came from what we sent since.
        self.high_water = Some(self.high_water.unwrap_or(offset).max(offset));
        self.acked = offset;
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_server_wins_forward_and_backward() {
        let mut t = Tracker::fresh(100);
        t.sending(40);
        assert_eq!(t.server_says(40), Ok(Move::Forward));
        t.sending(80);
        assert_eq!(t.server_says(20), Ok(Move::Backward));
        assert_eq!(t.next(30), Some((20, 50)));
        t.sending(50);
        assert_eq!(t.server_says(50), Ok(Move::Forward));
    }

    #[test]
    fn claims_beyond_what_was_sent_or_the_file_are_refused() {
        let mut t = Tracker::fresh(100);
        t.sending(40);
        let e = t.server_says(60).unwrap_err();
        assert_eq!(
            e,
            OffsetError::BeyondSent {
                offset: 60,
                sent: 40
            }
        );
        assert!(!e.transient());
        assert_eq!(t.acked, 0);
        assert!(matches!(
            t.server_says(101),
            Err(OffsetError::BeyondTotal { .. })
        ));
    }

    #[test]
    fn a_resumed_upload_takes_any_first_answer_within_the_file() {
        // An earlier run may have sent bytes it never recorded as acknowledged.
        let mut t = Tracker::resumed(100, 10);
        t.sending(20);
        assert_eq!(t.server_says(70), Ok(Move::Forward));
        // From then on what was sent is known.
        t.sending(80);
        assert!(t.server_says(90).is_err());
    }

    #[test]
    fn endless_regressions_end_the_attempt() {
        let mut t = Tracker::fresh(100);
        t.sending(50);
        t.server_says(50).unwrap();
        t.sending(60);
        assert_eq!(t.server_says(0), Ok(Move::Backward));
        // A server that keeps every byte it is sent from then on catches up without counting.
        t.sending(30);
        assert_eq!(t.server_says(30), Ok(Move::Forward));
        assert_eq!(t.regressions, 1);
        t.server_says(0).unwrap();
        for _ in 2..MAX_REGRESSIONS {
            t.sending(10);
            assert_eq!(t.server_says(0), Ok(Move::Same));
        }
        let e = t.server_says(0).unwrap_err();
        assert!(e.transient());
    }

    proptest! {
        /// Whatever the server answers, the acknowledged offset never passes the file or what
        /// was sent, and the next range always starts at it.
        #[test]
        fn acked_never_passes_what_was_sent(
            total in 1u64..10_000,
            answers in proptest::collection::vec(0u64..12_000, 1..50),
            size in 1u64..3000,
        ) {
            let mut t = Tracker::fresh(total);
            let mut sent = 0;
            for a in answers {
                let Some((first, end)) = t.next(size) else { break };
                prop_assert_eq!(first, t.acked);
                prop_assert!(end <= total && end > first);
                t.sending(end);
                sent = sent.max(end);
                let before = t;
                match t.server_says(a.min(end + 5)) {
                    Ok(_) => {
                        prop_assert!(t.acked <= sent);
                        prop_assert!(t.acked <= total);
                    }
                    Err(_) => prop_assert_eq!(t, before),
                }
            }
        }
    }
}
