//! The event log read back as the agent's own types ([`LoggedEvent`]): tests match on
//! `Event::RunbookStarted { .. }` rather than looking names up in JSON. Only the contract
//! test (tests/it/event_contract.rs) reads the raw lines.

// Not every test matches on `Event`.
#[allow(unused_imports)]
pub use firebreak::events::{Event, LoggedEvent};
use std::path::Path;

/// Every event of the log at `path` (none when it does not exist yet); panics naming a
/// line that does not read as an event.
pub fn read_log(path: &Path) -> Vec<LoggedEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    parse_log(&text, &path.display().to_string())
}

/// Every event of event log text (JSON lines); `origin` names it in a panic.
pub fn parse_log(text: &str, origin: &str) -> Vec<LoggedEvent> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            LoggedEvent::parse(l)
                .unwrap_or_else(|e| panic!("{origin}:{}: not an event ({e}): {l}", i + 1))
        })
        .collect()
}

/// How many of `events` satisfy `pred`.
pub fn count(events: &[LoggedEvent], pred: impl Fn(&LoggedEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

/// Where the first of `events` that satisfies `pred` is.
pub fn index_of(events: &[LoggedEvent], pred: impl Fn(&LoggedEvent) -> bool) -> Option<usize> {
    events.iter().position(pred)
}
