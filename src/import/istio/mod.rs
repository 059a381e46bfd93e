//! Placeholder.

use super::source::Resource;
use super::Cx;

/// VirtualService.
pub fn route(_res: &Resource, _cx: &mut Cx<'_>) -> bool {
    false
}

/// DestinationRule.
pub fn policy(_res: &Resource, _cx: &mut Cx<'_>) -> bool {
    false
}

/// PeerAuthentication and AuthorizationPolicy.
pub fn security(_res: &Resource, _cx: &mut Cx<'_>) -> bool {
    false
}
