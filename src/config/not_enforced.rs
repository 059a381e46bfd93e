//! Sections that are accepted and validated but not acted on yet.
//!
//! This is the one place that says so: when a feature lands, delete its row and the warning
//! disappears everywhere (the decoder only asks this table).

use super::reader::Ctx;
use super::tree::Pos;

/// `(id, what the user wrote, what that means today)`. The decoder passes the id.
pub(crate) const NOT_ENFORCED: &[(&str, &str, &str)] = &[(
    "discovery.kubernetes",
    "kubernetes",
    "no endpoints are discovered, so the service has none",
)];

/// Warns at `pos` if the section `id` is still in [`NOT_ENFORCED`].
pub(crate) fn warn_if_not_enforced(ctx: &mut Ctx, id: &str, pos: Pos, path: &str) {
    if let Some((_, what, effect)) = NOT_ENFORCED.iter().find(|(i, _, _)| *i == id) {
        ctx.warn(
            pos,
            path,
            format!("{what} is accepted but not enforced yet; {effect}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        for (i, (id, _, _)) in NOT_ENFORCED.iter().enumerate() {
            assert!(
                !NOT_ENFORCED[..i].iter().any(|(other, _, _)| other == id),
                "{id}"
            );
        }
    }

    #[test]
    fn warns_only_for_listed_ids() {
        let mut ctx = Ctx::new("f.yaml");
        warn_if_not_enforced(
            &mut ctx,
            "discovery.kubernetes",
            Pos { line: 3, col: 5 },
            "services[0].discovery.kubernetes",
        );
        warn_if_not_enforced(&mut ctx, "no.such.section", Pos::START, "x");
        let lines: Vec<String> = ctx.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec!["f.yaml:3:5: services[0].discovery.kubernetes: kubernetes is accepted but not enforced yet; no endpoints are discovered, so the service has none"]
        );
    }
}
