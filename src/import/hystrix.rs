//! Placeholder.

use super::source::Input;
use super::Cx;

/// Translates Hystrix properties.
pub fn translate(_input: &Input, _cx: &mut Cx<'_>) {}
