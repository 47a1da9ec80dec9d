//! `daemon.conditions`: the network and power state the daemon sees (`conditions` watches it)
//! and the policy defaults it applies.

use std::sync::Arc;

use ferry_proto::CostPolicy;

use super::{Answer, ApiResult};
use crate::daemon::Daemon;

/// `daemon.conditions`: what the daemon sees and the defaults it applies (nothing private:
/// every local user is affected by the same network).
pub fn status(
    daemon: &Arc<Daemon>,
    _: ferry_proto::params::Empty,
) -> ApiResult<ferry_proto::method::DaemonConditions> {
    use ferry_core::policy::Link;
    let caller = daemon.conditions().borrow().now;
    let defaults = daemon.opts().policy.defaults;
    Answer::now(ferry_proto::policy::ConditionsResult {
        cost: if caller.cost() == CostPolicy::UNRESTRICTED {
            "unrestricted"
        } else {
            "metered"
        }
        .into(),
        link: match caller.link() {
            Link::Up => "up",
            Link::Offline => "offline",
            Link::CaptivePortal => "captive_portal",
        }
        .into(),
        network_manager: caller
            .network
            .map(|n| ferry_proto::policy::NetworkManagerState {
                metered: n.metered,
                state: n.state,
                connectivity: n.connectivity,
            }),
        metered_interface: caller.metered_interface,
        on_battery: caller.on_battery,
        power_saver: caller.power_saver,
        sleeping: caller.sleeping,
        background_cost_policy: defaults.background_cost,
        foreground_cost_policy: defaults.foreground_cost,
        power_policy: defaults.power,
    })
}
