//! "Did you mean …?" for misspelt keys, enum values and names.

/// The candidate closest to `word`, if one is close enough to be a plausible typo: the same
/// word ignoring case, `_` and `-`, or within edit distance 2 (and at most half the candidate).
pub(crate) fn did_you_mean<'c, I>(word: &str, candidates: I) -> Option<&'c str>
where
    I: IntoIterator<Item = &'c str>,
{
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let word_norm = norm(word);
    let word_lower = word.to_lowercase();
    let mut best: Option<(usize, &'c str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = if norm(candidate) == word_norm {
            0
        } else {
            levenshtein(&word_lower, &candidate.to_lowercase())
        };
        let limit = 2.min(candidate.chars().count() / 2);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitution.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `` `a`, `b` or `c` `` for messages.
pub(crate) fn one_of(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [only] => format!("`{only}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|i| format!("`{i}`")).collect();
            format!("{} or `{last}`", init.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("adress", "address"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("abc", ""), 3);
    }

    #[test]
    fn suggests_close_keys() {
        let keys = ["name", "address", "protocol", "routes"];
        assert_eq!(did_you_mean("adress", keys), Some("address"));
        assert_eq!(did_you_mean("rotues", keys), Some("routes"));
        assert_eq!(did_you_mean("nmae", keys), Some("name"));
        assert_eq!(did_you_mean("Protocol", keys), Some("protocol"));
        assert_eq!(did_you_mean("totally_different", keys), None);
    }

    #[test]
    fn ignores_case_and_separators() {
        assert_eq!(
            did_you_mean("loadBalancer", ["load_balancer", "limits"]),
            Some("load_balancer")
        );
        assert_eq!(
            did_you_mean("least-request", ["round_robin", "least_request"]),
            Some("least_request")
        );
    }

    #[test]
    fn does_not_suggest_for_tiny_words_far_apart() {
        assert_eq!(did_you_mean("ab", ["on"]), None);
        assert_eq!(did_you_mean("b4", ["b3", "w3c"]), Some("b3"));
    }

    #[test]
    fn prefers_the_closest() {
        assert_eq!(
            did_you_mean("reviews-v3", ["reviews-shadow", "reviews-v2", "reviews-v1"]),
            Some("reviews-v2")
        );
    }

    #[test]
    fn one_of_lists() {
        assert_eq!(one_of(&["a"]), "`a`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
