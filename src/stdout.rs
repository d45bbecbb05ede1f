//! The text output of the one-shot commands (`--help`, `check`, `schema`, `status`, ...): a
//! reader that went away is not an error, and no `println!` panics on a closed pipe.

/// Writes `text` to stdout for the one-shot commands (`--help`, `check`, `schema`, ...).
/// A reader that went away (`simplevisor --help | head -1`) is not an error: the output is
/// simply not wanted any more. Returns the exit status to use: `ok`, or 1 when stdout failed
/// otherwise (said on stderr).
pub fn print(text: &str, ok: u8) -> u8 {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ok,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ok,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "simplevisor: cannot write to stdout: {error}"
            );
            1
        }
    }
}
