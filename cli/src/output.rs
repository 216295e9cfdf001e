//! Writing to stdout without panicking when the reader goes away (`| head`).

use std::io::Write;

use crate::error::CliError;

/// Writes `text` and a final newline to stdout. A closed pipe is not an error: the reader has seen enough.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(CliError::Io {
            context: "cannot write stdout",
            source,
        }),
    }
}
