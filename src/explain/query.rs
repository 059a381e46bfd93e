//! The question of `GET /explain?method=GET&path=/x&header=name:value&…`, read from the
//! query string (percent-encoded, `+` for a space).

use super::{Invalid, Question};

/// Reads a question from a query string: `method` and `path` are required; `header`
/// repeats; `listener`, `authority` (sent as Host), `peer` and `destination` are optional.
pub fn question(query: &str) -> Result<Question, Invalid> {
    let mut q = Question::default();
    let (mut method, mut path) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)
            .ok_or_else(|| Invalid(format!("the value of {key} is not percent-encoded UTF-8")))?;
        match key {
            "method" => method = Some(value),
            "path" => path = Some(value),
            "header" => q.headers.push(value),
            "authority" => q.headers.push(format!("host: {value}")),
            "listener" => q.listener = Some(value),
            "peer" => q.peer = Some(value),
            "destination" => {
                q.destination = Some(value.parse().map_err(|_| {
                    Invalid(format!("destination {value:?} is not IP:PORT"))
                })?)
            }
            other => {
                return Err(Invalid(format!(
                    "unknown parameter {other:?}; /explain takes method, path, header (repeated), listener, authority, peer and destination"
                )))
            }
        }
    }
    let example = "ask e.g. /explain?method=GET&path=/reviews/1&header=x-canary:true";
    q.method = method
        .filter(|m| !m.is_empty())
        .ok_or_else(|| Invalid(format!("missing method: {example}")))?;
    q.path = path
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Invalid(format!("missing path: {example}")))?;
    Ok(q)
}

/// Percent-decodes `s` (`+` is a space); `None` for a broken escape or bytes that are not
/// UTF-8.
fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                // Two hex digits exactly (`from_str_radix` alone would take `%+A`).
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_question_percent_decoded() {
        let q = question("method=GET&path=%2Freviews%2F1%3Fx%3D1&header=x-canary:+true&header=x-user%3A%20bob&destination=10.0.0.1:80")
            .expect("valid");
        assert_eq!(q.method, "GET");
        assert_eq!(q.path, "/reviews/1?x=1");
        assert_eq!(q.headers, ["x-canary: true", "x-user: bob"]);
        assert_eq!(q.destination, Some("10.0.0.1:80".parse().expect("address")));
    }

    #[test]
    fn refuses_a_question_without_method_or_path_or_with_unknown_parameters() {
        assert!(question("path=/")
            .expect_err("no method")
            .0
            .starts_with("missing method"));
        assert!(question("method=GET")
            .expect_err("no path")
            .0
            .starts_with("missing path"));
        assert!(question("method=GET&path=/&hedaer=x:y")
            .expect_err("typo")
            .0
            .contains("unknown parameter \"hedaer\""));
        assert!(question("method=GET&path=%zz").is_err());
    }
}
