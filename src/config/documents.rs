//! A multi-document YAML file cut into its documents, each with its original text.
//!
//! `weir inject` hands back every document it does not change byte for byte (comments,
//! quoting and all), and `weir import` reports positions in the whole file, so both need
//! each document's text and first line, not only its parsed value. A line
//! that starts with `---` followed by a space, a tab or the end of the line starts a
//! document: YAML forbids that marker inside any scalar, so the cut is exact.

/// One document of the file: its text (its `---` line included) and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    /// The document's text, from its `---` line (if any) to the next one.
    pub text: &'a str,
    /// The 1-based line of the file on which `text` starts.
    pub first_line: usize,
}

// === impl Document ===

impl<'a> Document<'a> {
    /// The leading lines kept verbatim when the document is rewritten: the `---` line and
    /// the blank and comment lines that follow it (a comment above a workload survives).
    pub fn head(&self) -> &'a str {
        let mut end = 0;
        for (i, line) in self.text.split_inclusive('\n').enumerate() {
            let trimmed = line.trim();
            let keep = (i == 0 && is_marker(line) && trimmed.len() == 3)
                || trimmed.is_empty()
                || trimmed.starts_with('#');
            if !keep {
                break;
            }
            end += line.len();
        }
        &self.text[..end]
    }
}

/// The documents of `text`, in order; their texts concatenated are `text`.
pub fn split(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line) && offset > start {
            docs.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset;
            start_line = index + 1;
        }
        offset += line.len();
    }
    if offset > start || docs.is_empty() {
        docs.push(Document {
            text: &text[start..],
            first_line: start_line,
        });
    }
    docs
}

/// Whether `line` is a document-start marker (`---` then whitespace or nothing).
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_cut_at_marker_lines_and_rejoin_to_the_file() {
        let text = "# leading\na: 1\n---\nb: 2\n--- # c\nc: |\n  ----\n  text\n";
        let docs = split(text);
        let texts: Vec<&str> = docs.iter().map(|d| d.text).collect();
        assert_eq!(
            texts,
            [
                "# leading\na: 1\n",
                "---\nb: 2\n",
                "--- # c\nc: |\n  ----\n  text\n"
            ]
        );
        let lines: Vec<usize> = docs.iter().map(|d| d.first_line).collect();
        assert_eq!(lines, [1, 3, 5]);
        assert_eq!(texts.concat(), text);
    }

    #[test]
    fn a_file_starting_with_a_marker_has_no_empty_first_document() {
        let docs = split("---\na: 1\n---\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].text, "---\na: 1\n");
        assert_eq!(docs[1].text, "---\n");
    }

    #[test]
    fn an_empty_file_is_one_empty_document() {
        assert_eq!(
            split(""),
            [Document {
                text: "",
                first_line: 1
            }]
        );
    }

    #[test]
    fn the_head_is_the_marker_and_the_comments_after_it() {
        let doc = split("---\n# the web tier\n\nkind: Pod\n# inner\n")[0];
        assert_eq!(doc.head(), "---\n# the web tier\n\n");
        let inline = split("--- {kind: Pod}\n")[0];
        assert_eq!(inline.head(), "");
    }
}
