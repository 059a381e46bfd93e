//! Istio: `VirtualService` (routes), `DestinationRule` (service policies),
//! `PeerAuthentication` and `AuthorizationPolicy` (the inbound listener's mTLS).

mod destination_rule;
mod duration;
mod security;
#[cfg(test)]
mod tests;
mod virtual_service;

use super::source::Resource;
use super::Cx;

/// Istio's networking API group.
const NETWORKING: &str = "networking.istio.io";
/// Istio's security API group.
const SECURITY: &str = "security.istio.io";

/// Translates a `VirtualService` into routes; whether `res` was one.
pub fn route(res: &Resource, cx: &mut Cx<'_>) -> bool {
    if res.group() != NETWORKING || res.kind != "VirtualService" {
        return false;
    }
    virtual_service::translate(res, cx);
    true
}

/// Applies a `DestinationRule` to the services of its host; whether `res` was one.
pub fn policy(res: &Resource, cx: &mut Cx<'_>) -> bool {
    if res.group() != NETWORKING || res.kind != "DestinationRule" {
        return false;
    }
    destination_rule::translate(res, cx);
    true
}

/// Applies a `PeerAuthentication` or an `AuthorizationPolicy` to the inbound listener;
/// whether `res` was one.
pub fn security(res: &Resource, cx: &mut Cx<'_>) -> bool {
    if res.group() != SECURITY {
        return false;
    }
    match res.kind.as_str() {
        "PeerAuthentication" => security::peer_authentication(res, cx),
        "AuthorizationPolicy" => security::authorization_policy(res, cx),
        _ => return false,
    }
    true
}
