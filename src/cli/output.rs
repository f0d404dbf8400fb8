//! Everything herald prints on stdout goes through here.
//!
//! `herald check POST | head` closes stdout early; that is the reader saying
//! it has seen enough, not a failure, so the rest of the output is dropped
//! quietly and the command ends with the exit code it would have had. Any
//! other failure to write (a full disk under `> file`) is a [`Fault`].

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::Fault;

/// Set once stdout's reader has gone away.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` to stdout, unless nobody reads it any more.
pub fn write(bytes: &[u8]) -> Result<(), Fault> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(Fault::io("write the output", &e)),
    }
}

/// One line of text on stdout.
pub fn line(args: std::fmt::Arguments<'_>) -> Result<(), Fault> {
    let mut s = args.to_string();
    s.push('\n');
    write(s.as_bytes())
}

/// `--json`: the value as pretty JSON and a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(write(s.as_bytes())?)
}

/// `say!("...", args)`: one line on stdout, through [`line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}
pub(crate) use say;
