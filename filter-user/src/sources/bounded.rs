//! Bounded reads of local input: at most so many bytes, and from a pipe, a
//! FIFO or a terminal only until a deadline (standard input that never ends
//! must not hang a cron job).

use std::{
    io::{self, Read},
    os::fd::AsFd,
    time::Instant,
};

use rustix::event::{PollFd, PollFlags, Timespec};

/// Standard input, whole: at most `max_bytes`, ending before `deadline`.
pub fn read_stdin(max_bytes: u64, deadline: Instant) -> io::Result<Vec<u8>> {
    read_bounded(io::stdin().lock(), max_bytes, deadline)
}

/// Everything `reader` gives until end of file: at most `max_bytes`,
/// waiting for more (a pipe, a FIFO, a terminal) only until `deadline`.
pub fn read_bounded(
    mut reader: impl Read + AsFd,
    max_bytes: u64,
    deadline: Instant,
) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        wait_readable(&reader, deadline)?;
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if bytes.len() as u64 + n as u64 > max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {max_bytes} bytes (--max-download)"),
            ));
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
}

/// Waits until `fd` is readable (or at end of file), failing at `deadline`.
fn wait_readable(fd: impl AsFd, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no end of input within --fetch-timeout",
                ));
            }
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
