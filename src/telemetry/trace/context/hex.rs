//! Lower-hex ids: read from header bytes without allocating, and written into header values
//! assembled on the stack.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The value of one lower-case hex digit (every format here writes ids in lower-hex).
pub(super) fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Exactly `2 * N` lower-hex digits as `N` bytes.
pub(super) fn parse_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        let &[high, low] = pair else { return None };
        *byte = (hex_digit(high)? << 4) | hex_digit(low)?;
    }
    Some(bytes)
}

/// The longest value written: `b3: {32}-{16}-{d}-{16}`.
const MAX_VALUE_LEN: usize = 32 + 1 + 16 + 1 + 1 + 1 + 16;

/// A header value assembled on the stack from hex ids and fixed text, then copied once
/// into a `HeaderValue`: no `String` on the request path.
pub(super) struct ValueText {
    bytes: [u8; MAX_VALUE_LEN],
    len: usize,
}

impl ValueText {
    /// An empty value.
    pub(super) fn new() -> Self {
        ValueText {
            bytes: [0; MAX_VALUE_LEN],
            len: 0,
        }
    }

    /// Appends fixed text (dashes, the version, a sampling state).
    pub(super) fn text(&mut self, text: &[u8]) -> &mut Self {
        let end = self.len + text.len();
        self.bytes[self.len..end].copy_from_slice(text);
        self.len = end;
        self
    }

    /// Appends an id's bytes as lower-hex digits.
    pub(super) fn hex(&mut self, id: &[u8]) -> &mut Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let end = self.len + 2 * id.len();
        for (pair, byte) in self.bytes[self.len..end].chunks_exact_mut(2).zip(id) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        self.len = end;
        self
    }

    /// Replaces every `name` field with this value.
    pub(super) fn set(&self, headers: &mut HeaderMap, name: &HeaderName) {
        // Hex digits, dashes and sampling letters are always valid header bytes, so the
        // error arm never runs; if it did, no stale value would be left behind.
        match HeaderValue::from_bytes(&self.bytes[..self.len]) {
            Ok(value) => {
                headers.insert(name.clone(), value);
            }
            Err(_) => {
                headers.remove(name);
            }
        }
    }
}
