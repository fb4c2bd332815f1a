//! The agent's own log (not the event log): filter, format and, under systemd, journald
//! priorities. Set up once by `main`, before anything logs.
//!
//! - Filter: `--log` or `RUST_LOG` (tracing's `EnvFilter` syntax). A filter that does not
//!   parse is a usage error, checked by clap through [`parse_filter`], never a silent `info`.
//! - Format: `--log-format text|json` or `FIREBREAK_LOG_FORMAT`. `json` writes one JSON
//!   object per line (`timestamp`, `level`, `fields`, `target`, `span`s) for log shippers.
//! - journald: when stderr is the journal's stream (systemd sets `JOURNAL_STREAM` to the
//!   device and inode of that stream), each line starts with its syslog priority (`<3>` for
//!   errors, `<4>` warnings, `<6>` info, `<7>` debug and trace), which journald reads and
//!   strips (systemd.exec(5), `SyslogLevelPrefix=`), so `journalctl -p err -u firebreak`
//!   shows the agent's errors. Colours are only used on a terminal.

use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Checks a log filter for clap: `Ok` with the text when tracing can use it.
pub fn parse_filter(text: &str) -> Result<String, String> {
    EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|e| format!("{e} (examples: \"info\", \"warn,firebreak=debug\")"))
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// True when `journal_stream` (the value of `JOURNAL_STREAM`, "DEVICE:INODE") names the
/// file behind `stderr_dev_ino`: systemd connected stderr to the journal. A service whose
/// stderr was redirected elsewhere inherits the variable but fails this check.
pub fn is_journal_stream(journal_stream: &str, stderr_dev_ino: (u64, u64)) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    matches!((dev.parse::<u64>(), ino.parse::<u64>()), (Ok(d), Ok(i)) if (d, i) == stderr_dev_ino)
}

/// Whether stderr is the journal, decided once.
fn stderr_is_journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(check_stderr_is_journal)
}

/// Writes a message the binary prints itself (not through tracing), such as the list of
/// config errors before exit 64, to stderr: under journald each line carries priority
/// `err` (`warning` for lines starting "warning:"), so `journalctl -p err` shows why the
/// agent did not start.
pub fn stderr_lines(text: &str) {
    let journald = stderr_is_journal();
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        if journald {
            out.push_str(if line.starts_with("warning:") {
                "<4>"
            } else {
                "<3>"
            });
        }
        out.push_str(line);
        out.push('\n');
    }
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

fn check_stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    // stat() on /proc/self/fd/2 reaches the socket or pipe behind stderr itself.
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => is_journal_stream(&stream, (m.dev(), m.ino())),
        Err(_) => false,
    }
}

/// Prefixes each line with its syslog priority for journald.
struct Prioritised<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Installs the global subscriber writing to stderr. `filter` was checked by
/// [`parse_filter`]; `default` applies when neither `--log` nor `RUST_LOG` is given.
pub fn init(filter: Option<&str>, default: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter.unwrap_or(default)).unwrap_or_else(|_| {
        // Unreachable: clap ran `parse_filter` on the given filter, and the defaults parse.
        EnvFilter::new("info")
    });
    let journald = stderr_is_journal();
    let ansi = !journald && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = tracing_subscriber::fmt::format();
    // `try_init`: a second call (tests) keeps the first subscriber.
    let _ = match (format, journald) {
        (LogFormat::Text, false) => builder.try_init(),
        (LogFormat::Text, true) => builder
            .event_format(Prioritised(fmt.without_time()))
            .try_init(),
        (LogFormat::Json, false) => builder.json().try_init(),
        (LogFormat::Json, true) => builder
            .json()
            .event_format(Prioritised(fmt.json()))
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_tracing_cannot_use_is_refused_with_examples() {
        assert_eq!(
            parse_filter("warn,firebreak=debug").unwrap(),
            "warn,firebreak=debug"
        );
        let err = parse_filter("firebreak=loud").unwrap_err();
        assert!(err.contains("examples"), "{err}");
    }

    #[test]
    fn journald_priorities_follow_syslog() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
        assert_eq!(syslog_priority(&Level::TRACE), 7);
    }

    #[test]
    fn the_journal_is_recognised_only_when_journal_stream_names_stderr() {
        assert!(is_journal_stream("8:1234", (8, 1234)));
        assert!(
            !is_journal_stream("8:1234", (8, 99)),
            "stderr redirected elsewhere"
        );
        assert!(!is_journal_stream("garbage", (8, 1234)));
        assert!(!is_journal_stream("", (8, 1234)));
    }
}
