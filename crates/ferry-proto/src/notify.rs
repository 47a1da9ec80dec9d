//! BITS notify flags (`BG_NOTIFY_*`).

/// A set of BITS notify flags; the wire form is the plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotifyFlags(pub u32);

impl NotifyFlags {
    /// `BG_NOTIFY_JOB_TRANSFERRED`.
    pub const JOB_TRANSFERRED: u32 = 0x1;
    /// `BG_NOTIFY_JOB_ERROR`.
    pub const JOB_ERROR: u32 = 0x2;
    /// `BG_NOTIFY_DISABLE`: suppresses all delivery while set.
    pub const DISABLE: u32 = 0x4;
    /// `BG_NOTIFY_JOB_MODIFICATION`.
    pub const JOB_MODIFICATION: u32 = 0x8;
    /// `BG_NOTIFY_FILE_TRANSFERRED`.
    pub const FILE_TRANSFERRED: u32 = 0x10;
    /// `BG_NOTIFY_FILE_RANGES_TRANSFERRED`.
    pub const FILE_RANGES_TRANSFERRED: u32 = 0x20;
    /// Every defined bit.
    pub const ALL: u32 = 0x3f;
    /// The default for a new job (transferred | error).
    pub const DEFAULT: u32 = 0x3;

    /// Accepts only defined bits.
    pub fn new(bits: u32) -> Option<NotifyFlags> {
        (bits & !Self::ALL == 0).then_some(NotifyFlags(bits))
    }

    /// Whether delivery of the callback selected by `bit` is wanted now.
    pub fn wants(self, bit: u32) -> bool {
        self.0 & Self::DISABLE == 0 && self.0 & bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_bits_are_refused() {
        assert!(NotifyFlags::new(0x40).is_none());
        assert!(NotifyFlags::new(0x3f).is_some());
    }

    #[test]
    fn disable_suppresses_everything() {
        let f = NotifyFlags(NotifyFlags::ALL);
        assert!(!f.wants(NotifyFlags::JOB_TRANSFERRED));
        assert!(NotifyFlags(3).wants(NotifyFlags::JOB_ERROR));
        assert!(!NotifyFlags(3).wants(NotifyFlags::JOB_MODIFICATION));
    }
}
