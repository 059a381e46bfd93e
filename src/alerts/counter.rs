//! "This counter went up": the PromQL every increase alert shares.

/// An expression returning each series of the counter `selector` that increased within
/// `window`, including a series that first appeared within it already above zero.
///
/// `increase()` needs two samples of a series, so it misses the event that creates the series:
/// `weir_outlier_ejections_total{endpoint=…}` appears at 1 with the endpoint's first
/// ejection. The second branch catches that case: above zero now, absent `window` ago.
pub(crate) fn increased(selector: &str, window: &str) -> String {
    format!(
        "increase({selector}[{window}]) > 0\nor\n({selector} > 0 unless {selector} offset {window})\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_increase_or_a_new_series_above_zero() {
        assert_eq!(
            increased("m{a=\"b\"}", "10m"),
            "increase(m{a=\"b\"}[10m]) > 0\nor\n(m{a=\"b\"} > 0 unless m{a=\"b\"} offset 10m)\n"
        );
    }
}
