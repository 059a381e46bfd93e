//! Reading a configuration file without trusting it: only regular files, at most
//! [`MAX_CONFIG_BYTES`], and only UTF-8 text.
//!
//! A path can name a FIFO (reading blocks forever), a device such as `/dev/zero` (reading never
//! ends) or a file that grows while it is read. The metadata is checked before the file is
//! opened and again on the open handle, and the read itself stops after one byte more than the
//! cap, so a file that lies about its size is still refused.

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::tree::Pos;

/// The largest configuration file weir reads: 16 MiB. A real configuration is a few KiB; the
/// cap only exists so a wrong path or a hostile file cannot make weir allocate without bound.
pub(crate) const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file was refused before its text was looked at.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// It is a directory.
    Directory,
    /// It is a FIFO, socket or device: reading it could block or never end.
    NotRegular(&'static str),
    /// It is larger than [`MAX_CONFIG_BYTES`] (by its metadata or by what was read).
    TooLarge,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Directory => f.write_str(
                "it is a directory, not a file; give the path of the YAML configuration file",
            ),
            Refusal::NotRegular(kind) => write!(
                f,
                "it is {kind}, not a regular file; weir reads its configuration only from a regular file"
            ),
            Refusal::TooLarge => write!(
                f,
                "the file is larger than {} MiB, the limit for a configuration file; check the path",
                MAX_CONFIG_BYTES / (1024 * 1024)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// What kind of non-regular file `meta` describes, for the message.
fn kind_of(meta: &std::fs::Metadata) -> Refusal {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        Refusal::Directory
    } else if t.is_fifo() {
        Refusal::NotRegular("a FIFO (named pipe)")
    } else if t.is_socket() {
        Refusal::NotRegular("a socket")
    } else if t.is_char_device() || t.is_block_device() {
        Refusal::NotRegular("a device")
    } else {
        Refusal::NotRegular("not a regular file")
    }
}

/// Refuses anything but a regular file no larger than the cap.
fn admit(meta: &std::fs::Metadata) -> std::io::Result<()> {
    if !meta.is_file() {
        return Err(std::io::Error::other(kind_of(meta)));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(Refusal::TooLarge));
    }
    Ok(())
}

/// The bytes of the regular file at `path`, at most [`MAX_CONFIG_BYTES`] of them.
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    admit(&std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    // Checked again on the handle, in case the path was replaced in between.
    admit(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(Refusal::TooLarge));
    }
    Ok(bytes)
}

/// Text that is not UTF-8: where the first invalid byte is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotUtf8 {
    /// Line and column (in characters) of the first invalid byte.
    pub pos: Pos,
    /// Its 0-based byte offset in the file.
    pub offset: usize,
    /// The byte itself.
    pub byte: u8,
}

impl fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the file is not valid UTF-8: byte 0x{:02X} at byte offset {} cannot start or continue a character; save the file as UTF-8",
            self.byte, self.offset
        )
    }
}

/// The bytes as text, or where the first byte that is not UTF-8 is.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, NotUtf8> {
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        // Everything before `offset` is valid UTF-8, so this cannot fail.
        let before = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        NotUtf8 {
            pos: Pos {
                line: clamp(before.matches('\n').count() + 1),
                col: clamp(before[line_start..].chars().count() + 1),
            },
            offset,
            byte: bytes.get(offset).copied().unwrap_or_default(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_located_by_line_column_and_offset() {
        let err = utf8(b"a: 1\nb: \xc3\xa9\xff\n").expect_err("invalid");
        assert_eq!(
            err,
            NotUtf8 {
                pos: Pos { line: 2, col: 5 },
                offset: 10,
                byte: 0xff
            }
        );
        assert_eq!(utf8(b"a: \xc3\xa9\n"), Ok("a: \u{e9}\n"));
    }

    #[test]
    fn directories_and_devices_are_refused_before_reading() {
        let dir = read_bounded(Path::new("src")).expect_err("a directory");
        assert_eq!(
            dir.to_string(),
            "it is a directory, not a file; give the path of the YAML configuration file"
        );
        let dev = read_bounded(Path::new("/dev/zero")).expect_err("a device");
        assert_eq!(
            dev.to_string(),
            "it is a device, not a regular file; weir reads its configuration only from a regular file"
        );
    }
}
