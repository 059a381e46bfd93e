//! YAML tags (`!python/object:…`, `!custom`, `!!str`) are refused wherever they appear.
//!
//! A weir configuration is plain data: a tag would either be ignored silently (so the file
//! does not mean what it says) or ask some loader to build an object. The parser's event
//! stream is read once before decoding, tracking the field path, so each tag is reported at
//! its node with the field it belongs to.

use serde_saphyr::granit_parser::{Event, Parser};

use super::tree::Pos;

/// One tag found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagFound {
    /// Where the tagged node starts.
    pub pos: Pos,
    /// The field path (`listeners[0].name`), empty at the root.
    pub path: String,
    /// The tag as written (`!custom`, `!!str`).
    pub tag: String,
}

impl TagFound {
    /// The message for the user.
    pub fn message(&self) -> String {
        format!(
            "YAML tags are not allowed in a weir configuration (found `{}`); remove the tag and write the plain value",
            self.tag
        )
    }
}

/// Where the walk is inside one collection.
enum Frame {
    /// In a mapping: the next scalar is a key when `at_key`; `key` is the current key.
    Map { at_key: bool, key: String },
    /// In a sequence: the index of the next item.
    Seq { next: usize },
}

/// The path of the node about to start, given the open collections.
fn path_of(stack: &[Frame]) -> String {
    let mut path = String::new();
    for frame in stack {
        match frame {
            Frame::Map { key, .. } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Frame::Seq { next } => path.push_str(&format!("[{next}]")),
        }
    }
    path
}

/// Every tag in `text`, in file order. Stops quietly at a syntax error: the decoder reports it.
pub(crate) fn find_tags(text: &str) -> Vec<TagFound> {
    let mut found = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        let (tag, opens) = match &event {
            Event::Scalar(_, _, _, tag) => (tag.as_ref(), None),
            Event::SequenceStart(_, _, tag) => (tag.as_ref(), Some(Frame::Seq { next: 0 })),
            Event::MappingStart(_, _, tag) => (
                tag.as_ref(),
                Some(Frame::Map {
                    at_key: true,
                    key: String::new(),
                }),
            ),
            Event::Alias(_) => (None, None),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack, None);
                continue;
            }
            _ => continue,
        };
        let at_key = matches!(stack.last(), Some(Frame::Map { at_key: true, .. }));
        if let Some(tag) = tag {
            let path = match (&event, at_key) {
                // A tagged key: the path of the field it names.
                (Event::Scalar(key, ..), true) => {
                    let parent = path_of(&stack[..stack.len().saturating_sub(1)]);
                    if parent.is_empty() {
                        key.to_string()
                    } else {
                        format!("{parent}.{key}")
                    }
                }
                _ => path_of(&stack),
            };
            let written = if tag.original_handle().is_empty() {
                tag.to_string()
            } else {
                format!("{}{}", tag.original_handle(), tag.suffix())
            };
            let content = span.start.byte_offset().unwrap_or_else(|| {
                text.char_indices()
                    .nth(span.start.index())
                    .map_or(text.len(), |(i, _)| i)
            });
            // The span starts at the content; the tag is written before it.
            let start = text
                .get(..content)
                .and_then(|before| before.rfind(&written))
                .unwrap_or(content);
            found.push(TagFound {
                pos: pos_at(text, start),
                path,
                tag: written,
            });
        }
        match opens {
            Some(frame) => stack.push(frame),
            None => {
                let key = match &event {
                    Event::Scalar(value, ..) if at_key => Some(value.to_string()),
                    _ => None,
                };
                advance(&mut stack, key);
            }
        }
    }
    found
}

/// The line and column (in characters) of byte `offset` in `text`.
fn pos_at(text: &str, offset: usize) -> Pos {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Pos {
        line: clamp(before.matches('\n').count() + 1),
        col: clamp(before[line_start..].chars().count() + 1),
    }
}

/// A node of the innermost collection is complete: move to its next key, value or item.
fn advance(stack: &mut [Frame], key: Option<String>) {
    match stack.last_mut() {
        Some(Frame::Map { at_key, key: k }) => {
            if *at_key {
                *k = key.unwrap_or_else(|| "<key>".to_string());
            }
            *at_key = !*at_key;
        }
        Some(Frame::Seq { next }) => *next += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(text: &str) -> Vec<(u32, u32, String, String)> {
        find_tags(text)
            .into_iter()
            .map(|t| (t.pos.line, t.pos.col, t.path, t.tag))
            .collect()
    }

    #[test]
    fn untagged_yaml_has_no_tags() {
        assert!(tags("a: [1, {b: c}]\nd: &x e\nf: *x\n").is_empty());
    }

    #[test]
    fn every_tag_is_found_with_its_field_path() {
        assert_eq!(
            tags("a: !custom 1\nl:\n  - x\n  - !!str y\nm: { k: !!python/object:os.system z }\n!k n: !\n  1\n"),
            vec![
                (1, 4, "a".to_string(), "!custom".to_string()),
                (4, 5, "l[1]".to_string(), "!!str".to_string()),
                (
                    5,
                    9,
                    "m.k".to_string(),
                    "!!python/object:os.system".to_string()
                ),
                (6, 1, "n".to_string(), "!k".to_string()),
                (6, 7, "n".to_string(), "!".to_string()),
            ]
        );
    }
}
