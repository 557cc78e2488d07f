//! Colour on a terminal, plain text otherwise (and whenever `NO_COLOR` is set).

use std::fmt::Display;
use std::io::{IsTerminal, Write as _};

/// `println!` that ends the process quietly when stdout is closed (`| head`)
/// instead of panicking.
macro_rules! out {
    () => {
        $crate::style::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::style::write_line(format_args!($($arg)*))
    };
}

/// Writes one line to stdout; exits with success if the reader went away.
pub(crate) fn write_line(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Paints text with ANSI colours, or passes it through unchanged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    on: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset.
    pub(crate) fn stdout() -> Self {
        Self {
            on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(self, code: &str, text: impl Display) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Success.
    pub(crate) fn green(self, text: impl Display) -> String {
        self.paint("32", text)
    }

    /// Failure.
    pub(crate) fn red(self, text: impl Display) -> String {
        self.paint("31", text)
    }

    /// Attention (refresh calls, skipped).
    pub(crate) fn yellow(self, text: impl Display) -> String {
        self.paint("33", text)
    }

    /// Headings.
    pub(crate) fn bold(self, text: impl Display) -> String {
        self.paint("1", text)
    }

    /// Secondary detail (timings).
    pub(crate) fn dim(self, text: impl Display) -> String {
        self.paint("2", text)
    }

    /// An HTTP status, coloured by class.
    pub(crate) fn status(self, status: Option<u16>) -> String {
        match status {
            Some(s @ 200..=299) => self.green(s),
            Some(s) => self.red(s),
            None => self.red("ERR"),
        }
    }
}
