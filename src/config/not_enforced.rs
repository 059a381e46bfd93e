//! Sections that are accepted and validated but not acted on yet.
//!
//! This is the one place that says so: when a feature lands, delete its row and the warning
//! disappears everywhere (the decoder only asks this table).

use super::reader::Ctx;
use super::tree::Pos;

/// `(id, what the user wrote, what that means today)`. The decoder passes the id.
pub(crate) const NOT_ENFORCED: &[(&str, &str, &str)] = &[];

/// Warns at `pos` if the section `id` is still in [`NOT_ENFORCED`].
pub(crate) fn warn_if_not_enforced(ctx: &mut Ctx, id: &str, pos: Pos, path: &str) {
    warn_if_listed(NOT_ENFORCED, ctx, id, pos, path);
}

/// Warns at `pos` if `id` is a row of `table` (the table is a parameter so the test does not
/// depend on which features are still missing).
fn warn_if_listed(table: &[(&str, &str, &str)], ctx: &mut Ctx, id: &str, pos: Pos, path: &str) {
    if let Some((_, what, effect)) = table.iter().find(|(i, _, _)| *i == id) {
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
        let table = [("feature.x", "x: true", "nothing happens")];
        let mut ctx = Ctx::new("f.yaml");
        warn_if_listed(
            &table,
            &mut ctx,
            "feature.x",
            Pos { line: 3, col: 5 },
            "services[0].x",
        );
        warn_if_listed(&table, &mut ctx, "no.such.section", Pos::START, "x");
        let lines: Vec<String> = ctx.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec!["f.yaml:3:5: services[0].x: x: true is accepted but not enforced yet; nothing happens"]
        );
    }

    #[test]
    fn kubernetes_discovery_and_transparent_listeners_are_enforced() {
        for landed in ["discovery.kubernetes", "listener.transparent"] {
            assert!(
                !NOT_ENFORCED.iter().any(|(id, _, _)| *id == landed),
                "{landed}"
            );
        }
    }
}
