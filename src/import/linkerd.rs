//! Placeholder.

use super::source::Resource;
use super::Cx;

/// Translates a resource of this source; whether it was one.
pub fn policy(_res: &Resource, _cx: &mut Cx<'_>) -> bool {
    false
}
