//! A job's network-cost and power settings as they appear on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which network costs a job may transfer on: a BITS cost-flags mask
/// (`BITS_JOB_PROPERTY_ID_COST_FLAGS`). A job runs only while the network's cost bit is in it.
///
/// On the wire it is one of the names `any`, `not_metered`, `not_roaming`, a BITS transfer
/// policy preset name (`always`, `no_surcharge`, `standard`, `unrestricted`), or the mask as a
/// number (`2147483681`) or hex string (`"0x80000021"`). It is answered as one of the three
/// names when it equals one, else as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CostPolicy(pub u32);

impl CostPolicy {
    /// Cost bit of an unrestricted network (no NetworkManager, not metered, or unknown).
    pub const UNRESTRICTED: u32 = 0x01;
    /// Cost bit of a metered network (NetworkManager's `Metered` yes or guess-yes).
    pub const USAGE_BASED: u32 = 0x40;
    /// Cost bit of a roaming mobile connection.
    pub const ROAMING: u32 = 0x80;
    /// Every network (BITS `ALWAYS`).
    pub const ANY: CostPolicy = CostPolicy(0x8000_00FF);
    /// Every network but a roaming one (BITS `NOT_ROAMING`).
    pub const NOT_ROAMING: CostPolicy = CostPolicy(0x8000_007F);
    /// Neither metered nor roaming networks.
    pub const NOT_METERED: CostPolicy = CostPolicy(0x8000_003F);

    const NAMES: [(&'static str, CostPolicy); 7] = [
        ("any", CostPolicy::ANY),
        ("not_metered", CostPolicy::NOT_METERED),
        ("not_roaming", CostPolicy::NOT_ROAMING),
        ("always", CostPolicy::ANY),
        ("no_surcharge", CostPolicy(0x8000_006F)),
        ("standard", CostPolicy(0x8000_0067)),
        ("unrestricted", CostPolicy(0x8000_0021)),
    ];

    /// Whether a network whose cost bit is `cost` may be used.
    pub fn allows(self, cost: u32) -> bool {
        self.0 & cost != 0
    }

    /// The Linux-native name, when the mask is one of `any`, `not_metered`, `not_roaming`.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES[..3]
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
    }

    /// Parses a name, a preset name or a decimal / `0x` hex mask.
    pub fn parse(s: &str) -> Result<CostPolicy, String> {
        let s = s.trim();
        let found = Self::NAMES.iter().find(|(n, _)| *n == s).map(|(_, p)| *p);
        let mask = match found {
            Some(p) => return Ok(p),
            None => match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => s.parse::<u32>().ok(),
            },
        };
        match mask {
            Some(m) => CostPolicy::from_mask(m),
            None => Err(format!(
                "cost policy {s:?} is not one of any, not_metered, not_roaming, always, \
                 no_surcharge, standard, unrestricted, or a BITS cost-flags mask"
            )),
        }
    }

    /// Checks a numeric mask: it must allow an unrestricted network, or the job could never run.
    pub fn from_mask(mask: u32) -> Result<CostPolicy, String> {
        if mask & Self::UNRESTRICTED == 0 {
            return Err(format!(
                "cost policy mask {mask:#010x} does not allow an unrestricted network \
                 (bit 0x1), so the job could never run; include that bit"
            ));
        }
        Ok(CostPolicy(mask))
    }
}

impl std::fmt::Display for CostPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "{:#010x}", self.0),
        }
    }
}

impl Serialize for CostPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => s.serialize_u32(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for CostPolicy {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Mask(u32),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Mask(m) => CostPolicy::from_mask(m),
            Raw::Text(t) => CostPolicy::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// Whether a job waits for mains power (an opt-in; the default is `any`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PowerPolicy {
    /// Power does not matter.
    #[default]
    Any,
    /// Waits while the host is in power-saver mode (`waiting.reason` `power_saver`).
    NotPowerSaver,
    /// Waits while the host runs on battery (`on_battery`) or is in power-saver mode.
    NotOnBattery,
}

impl PowerPolicy {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerPolicy::Any => "any",
            PowerPolicy::NotPowerSaver => "not_power_saver",
            PowerPolicy::NotOnBattery => "not_on_battery",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<PowerPolicy> {
        [
            PowerPolicy::Any,
            PowerPolicy::NotPowerSaver,
            PowerPolicy::NotOnBattery,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for PowerPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// NetworkManager's raw values, as the daemon last read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkManagerState {
    /// `Metered` (0 unknown, 1 yes, 2 no, 3 guess-yes, 4 guess-no).
    pub metered: u32,
    /// `State` (70 connected-global, …).
    pub state: u32,
    /// `Connectivity` (4 full, 2 portal, 1 none, …).
    pub connectivity: u32,
}

/// `daemon.conditions` result: the network and power state the daemon sees, and the defaults
/// it applies to jobs without their own policy. `None` fields: that service is not on the bus
/// (which restricts nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionsResult {
    /// `unrestricted` or `metered`.
    pub cost: String,
    /// `up`, `offline` or `captive_portal`.
    pub link: String,
    /// NetworkManager's values, while it is on the bus.
    pub network_manager: Option<NetworkManagerState>,
    /// The default route uses an interface listed in `[network] metered_interfaces`.
    pub metered_interface: bool,
    /// UPower's `OnBattery`, while UPower is on the bus.
    pub on_battery: Option<bool>,
    /// The power profile is power-saver, while power-profiles-daemon is on the bus.
    pub power_saver: Option<bool>,
    /// Between logind's `PrepareForSleep(true)` and `(false)`.
    pub sleeping: bool,
    /// Cost policy of background jobs that set none.
    pub background_cost_policy: CostPolicy,
    /// Cost policy of foreground jobs that set none.
    pub foreground_cost_policy: CostPolicy,
    /// Power policy of jobs that set none.
    pub power_policy: PowerPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_presets_and_masks_parse() {
        assert_eq!(CostPolicy::parse("any"), Ok(CostPolicy::ANY));
        assert_eq!(CostPolicy::parse("always"), Ok(CostPolicy::ANY));
        assert_eq!(
            CostPolicy::parse("not_metered"),
            Ok(CostPolicy::NOT_METERED)
        );
        assert_eq!(CostPolicy::parse("0x80000021"), Ok(CostPolicy(0x8000_0021)));
        assert_eq!(CostPolicy::parse("2147483775"), Ok(CostPolicy::NOT_ROAMING));
        assert!(CostPolicy::parse("cheap").is_err());
        assert!(
            CostPolicy::parse("0x40")
                .unwrap_err()
                .contains("unrestricted")
        );
    }

    #[test]
    fn wire_form_is_the_name_or_the_number() {
        let j = |p: CostPolicy| serde_json::to_string(&p).unwrap();
        assert_eq!(j(CostPolicy::NOT_METERED), "\"not_metered\"");
        assert_eq!(j(CostPolicy(0x8000_0021)), "2147483681");
        let back: CostPolicy = serde_json::from_str("\"standard\"").unwrap();
        assert_eq!(back, CostPolicy(0x8000_0067));
        let back: CostPolicy = serde_json::from_str("2147483681").unwrap();
        assert_eq!(back, CostPolicy(0x8000_0021));
        assert!(serde_json::from_str::<CostPolicy>("64").is_err());
    }

    #[test]
    fn masks_decide_by_cost_bit() {
        assert!(CostPolicy::ANY.allows(CostPolicy::USAGE_BASED));
        assert!(CostPolicy::NOT_ROAMING.allows(CostPolicy::USAGE_BASED));
        assert!(!CostPolicy::NOT_ROAMING.allows(CostPolicy::ROAMING));
        assert!(!CostPolicy::NOT_METERED.allows(CostPolicy::USAGE_BASED));
        assert!(!CostPolicy::NOT_METERED.allows(CostPolicy::ROAMING));
        assert!(CostPolicy::NOT_METERED.allows(CostPolicy::UNRESTRICTED));
    }
}
