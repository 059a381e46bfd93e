//! The names other fields refer to and logs print: listener, route and service names.
//!
//! Such a name ends up in log lines, metric labels, span attributes and admin pages, so it is
//! restricted to a set no reader can misread: ASCII letters, digits, `-`, `_` and `.`,
//! starting with a letter or digit, at most 63 characters. That keeps newlines and control
//! characters out of log lines (no forged entries), keeps look-alike Unicode letters and
//! bidirectional marks out of names that must match exactly, and covers every Kubernetes
//! service name (a DNS label, which is at most 63 characters), so mesh names fit unchanged.

/// The longest name accepted: the length of a DNS label (and of a Kubernetes service name).
pub(crate) const MAX_NAME_CHARS: usize = 63;

/// What the rule allows, for every message about a name.
const ALLOWED: &str = "names may use only ASCII letters, digits, `-`, `_` and `.`, must start with a letter or digit, and be at most 63 characters long";

/// `Ok` when `name` follows the rule; otherwise what is wrong and what is allowed.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let problem = if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        format!("contains {}", describe_char(c))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "does not start with a letter or digit".to_string()
    } else if name.chars().count() > MAX_NAME_CHARS {
        format!("is {} characters long", name.chars().count())
    } else {
        return Ok(());
    };
    Err(format!("the name {problem}; {ALLOWED}"))
}

/// A character as a message can show it: escaped when it is a control or space character.
fn describe_char(c: char) -> String {
    match c {
        '\n' => "a line break".to_string(),
        '\t' => "a tab".to_string(),
        ' ' => "a space".to_string(),
        c if c.is_control() || c.is_whitespace() => format!("the control character {c:?}"),
        c => format!("the character `{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_accepted() {
        for name in [
            "reviews-v1",
            "a",
            "9to5",
            "shop.reviews_v2",
            &"a".repeat(63),
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn each_broken_rule_is_named() {
        let problem = |name: &str| {
            let message = check_name(name).expect_err(name);
            assert!(message.ends_with(ALLOWED), "{message}");
            message
                .trim_end_matches(ALLOWED)
                .trim_end_matches("; ")
                .to_string()
        };
        assert_eq!(problem("a\nb"), "the name contains a line break");
        assert_eq!(
            problem("a\u{1b}[31m"),
            "the name contains the control character '\\u{1b}'"
        );
        assert_eq!(problem("café"), "the name contains the character `é`");
        assert_eq!(
            problem("-a"),
            "the name does not start with a letter or digit"
        );
        assert_eq!(problem(&"a".repeat(64)), "the name is 64 characters long");
    }
}
