//! Where MTA logs come from — files, rotated `.gz` files, standard input —
//! read line by line through a fixed buffer, so a log of any size takes
//! the same memory. A gzip stream is recognised by its magic bytes, not
//! its name, and may hold several members (as `cat a.gz b.gz` makes).

use std::{
    fmt,
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::PathBuf,
    time::SystemTime,
};

use flate2::read::MultiGzDecoder;

use super::stamp;
use crate::{
    error::InvalidInput,
    files::{self, Links},
};

/// Longest log line read; a longer one is counted unreadable and skipped
/// to its end without being kept (syslog lines are at most a few KiB).
pub const MAX_LINE: usize = 64 * 1024;

/// The reader's buffer: large enough that a line is rarely split.
const BUFFER: usize = 256 * 1024;

/// A `--mta-log` value: a file (plain or gzip), or `-` for standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogSource {
    /// Standard input.
    Stdin,
    /// A file.
    File(PathBuf),
}

impl From<&str> for LogSource {
    fn from(text: &str) -> Self {
        if text == "-" {
            LogSource::Stdin
        } else {
            LogSource::File(PathBuf::from(text))
        }
    }
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSource::Stdin => f.write_str("-"),
            LogSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// An open log, read line by line.
pub struct LogInput {
    /// The log as given (`-` for standard input).
    pub name: String,
    /// The time a stamp without a year may be at most a day after: the
    /// file's modification time, or now for standard input.
    pub reference: i64,
    reader: Box<dyn BufRead>,
    /// Lines read so far.
    pub line_number: u64,
}

/// One line read.
pub enum LineRead {
    /// The line is in the buffer given to [`LogInput::next_line`].
    Line,
    /// The line was longer than [`MAX_LINE`]; it was skipped.
    TooLong,
}

impl LogInput {
    /// Opens `source`. A file must be a regular file (a FIFO or a device
    /// is refused unread, as every file mxgate reads); standard input must
    /// not be a terminal (a log is piped in).
    pub fn open(source: &LogSource, now: i64) -> anyhow::Result<Self> {
        let (raw, reference): (Box<dyn Read>, i64) = match source {
            LogSource::Stdin => {
                // SAFETY: isatty only reads the descriptor's state.
                if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
                    return Err(InvalidInput(
                        "--mta-log -: standard input is a terminal; pipe the log in \
                         (journalctl -u postfix -o short-iso | mxgate audit --mta-log - …)"
                            .into(),
                    )
                    .into());
                }
                (Box::new(io::stdin()), now)
            }
            LogSource::File(path) => {
                let (file, meta): (File, _) = files::open_regular(path, Links::Follow)
                    .map_err(|e| InvalidInput(format!("reading {}: {e}", path.display())))?;
                let modified = meta
                    .modified()
                    .map(stamp::seconds)
                    .unwrap_or_else(|_| stamp::seconds(SystemTime::now()));
                (Box::new(file), modified)
            }
        };
        let mut buffered = BufReader::with_capacity(BUFFER, raw);
        let gzip = buffered
            .fill_buf()
            .map_err(|e| InvalidInput(format!("reading {source}: {e}")))?
            .starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(
                BUFFER,
                MultiGzDecoder::new(buffered),
            ))
        } else {
            Box::new(buffered)
        };
        Ok(Self {
            name: source.to_string(),
            reference,
            reader,
            line_number: 0,
        })
    }

    /// Reads the next line into `line` (without its end), or `None` at the
    /// end of the log. Never holds more than [`MAX_LINE`] bytes of a line.
    pub fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<Option<LineRead>> {
        line.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (chunk, used, ended) = match available.iter().position(|&b| b == b'\n') {
                Some(at) => (&available[..at], at + 1, true),
                None => (available, available.len(), false),
            };
            if !too_long && line.len() + chunk.len() <= MAX_LINE {
                line.extend_from_slice(chunk);
            } else {
                too_long = true;
                line.clear();
            }
            self.reader.consume(used);
            if ended {
                break;
            }
        }
        self.line_number += 1;
        Ok(Some(if too_long {
            LineRead::TooLong
        } else {
            LineRead::Line
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn lines_of(input: &mut LogInput) -> Vec<Result<String, ()>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(read) = input.next_line(&mut buf).unwrap() {
            out.push(match read {
                LineRead::Line => Ok(String::from_utf8_lossy(&buf).into_owned()),
                LineRead::TooLong => Err(()),
            });
        }
        out
    }

    #[test]
    fn plain_gzip_and_concatenated_gzip_read_the_same() {
        let dir = std::env::temp_dir().join(format!("mxgate-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = "one\ntwo\r\n\nthree";
        let plain = dir.join("mail.log");
        std::fs::write(&plain, text).unwrap();
        let gz = |t: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(t.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let rotated = dir.join("mail.log.2.gz");
        std::fs::write(&rotated, gz(text)).unwrap();
        let joined = dir.join("joined");
        let mut both = gz("one\ntwo\r\n");
        both.extend(gz("\nthree"));
        std::fs::write(&joined, both).unwrap();
        for path in [&plain, &rotated, &joined] {
            let mut input = LogInput::open(&LogSource::File(path.clone()), 0).unwrap();
            assert_eq!(
                lines_of(&mut input),
                [
                    Ok("one".into()),
                    Ok("two\r".into()),
                    Ok(String::new()),
                    Ok("three".into())
                ],
                "{}",
                path.display()
            );
            assert_eq!(input.line_number, 4);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_line_too_long_is_skipped_whole() {
        let dir = std::env::temp_dir().join(format!("mxgate-input-long-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("long.log");
        let long = "x".repeat(BUFFER * 2 + 5);
        std::fs::write(&path, format!("a\n{long}\nb\n")).unwrap();
        let mut input = LogInput::open(&LogSource::File(path), 0).unwrap();
        assert_eq!(
            lines_of(&mut input),
            [Ok("a".into()), Err(()), Ok("b".into())]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_not_a_file_is_refused_unread() {
        for (path, why) in [
            ("/dev/zero", "not a regular file (a device)"),
            ("/nonexistent/mail.log", "No such file"),
            ("/", "not a regular file (a directory)"),
        ] {
            let e = LogInput::open(&LogSource::File(path.into()), 0)
                .err()
                .unwrap();
            assert!(e.is::<InvalidInput>(), "{path}: {e}");
            assert!(e.to_string().contains(why), "{path}: {e}");
            assert!(
                e.to_string().starts_with(&format!("reading {path}: ")),
                "{e}"
            );
        }
    }
}
