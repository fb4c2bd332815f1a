//! The upsd network protocol's grammar (NUT's `docs/net-protocol.txt`), without I/O: words
//! of a line (quoted strings, backslash escapes), `ERR` codes, `VAR` lines and the flags of
//! `ups.status`. The client (`client.rs`) sends and reads lines; this decides what they
//! mean. Pure, so `config` may use [`StatusFlag`] to check a sensor's `status_flag`.

use serde::{Deserialize, Serialize};

/// The longest line accepted from upsd. Its own buffers are smaller (a value is at most
/// 256 bytes); a longer line means something other than upsd is talking.
pub const MAX_LINE: usize = 8 * 1024;

/// The most lines one `LIST` may hold (a UPS has a few hundred variables at most).
pub const MAX_LIST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unterminated quoted string")]
    Unterminated,
    #[error("backslash at the end of the line")]
    DanglingEscape,
    #[error("empty line")]
    Empty,
    #[error("control character 0x{0:02x} in a line")]
    Control(u8),
}

/// The words of one protocol line: separated by spaces or tabs; a double-quoted part may
/// hold spaces; a backslash takes the next character as it is (`\"`, `\\`), inside quotes
/// or out. An empty quoted string (`""`) is a word.
pub fn split_words(line: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether a word has begun (so that `""` counts as one).
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => {
                let next = chars.next().ok_or(ParseError::DanglingEscape)?;
                word.push(next);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c if c.is_ascii_control() => return Err(ParseError::Control(c as u8)),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(ParseError::Unterminated);
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(words)
}

/// A word quoted for a command line: in double quotes, `"` and `\` escaped.
pub fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The error codes upsd answers with (`ERR <CODE> [...]`), as it writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum NutCode {
    /// Wrong password, or the user may not do this (upsd.users `actions`, `upsmon`).
    AccessDenied,
    /// upsd serves no UPS of that name.
    UnknownUps,
    /// The UPS has no such variable.
    VarNotSupported,
    CmdNotSupported,
    InvalidArgument,
    InstcmdFailed,
    SetFailed,
    Readonly,
    TooLong,
    FeatureNotSupported,
    /// `STARTTLS` to a upsd without a certificate configured.
    FeatureNotConfigured,
    AlreadySslMode,
    /// upsd has lost its driver: it has no data for the UPS.
    DriverNotConnected,
    /// The driver has not updated the UPS's data for upsd's `MAXAGE`.
    DataStale,
    AlreadyLoggedIn,
    InvalidPassword,
    AlreadySetPassword,
    InvalidUsername,
    AlreadySetUsername,
    UsernameRequired,
    PasswordRequired,
    UnknownCommand,
    InvalidValue,
    /// A code this client does not know (newer upsd versions add some).
    #[serde(other)]
    Other,
}

impl NutCode {
    /// The code as upsd writes it; `OTHER` for codes not known here.
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    pub fn parse(s: &str) -> NutCode {
        crate::names::from_name(s).unwrap_or(NutCode::Other)
    }

    /// Whether the code says the UPS has no current data (the device, not the link).
    pub fn is_no_data(self) -> bool {
        matches!(self, NutCode::DataStale | NutCode::DriverNotConnected)
    }
}

/// An `ERR` answer: its code and the line as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrAnswer {
    pub code: NutCode,
    pub line: String,
}

/// The `ERR` a line holds, if it is one.
pub fn err_of(words: &[String]) -> Option<ErrAnswer> {
    match words {
        [first, code, ..] if first == "ERR" => Some(ErrAnswer {
            code: NutCode::parse(code),
            line: words.join(" "),
        }),
        [first] if first == "ERR" => Some(ErrAnswer {
            code: NutCode::Other,
            line: first.clone(),
        }),
        _ => None,
    }
}

/// `VAR <ups> <name> <value>`: the name and value when the line is one, for `ups`.
pub fn var_of<'a>(words: &'a [String], ups: &str) -> Option<(&'a str, &'a str)> {
    match words {
        [tag, u, name, value] if tag == "VAR" && u == ups => Some((name, value)),
        _ => None,
    }
}

/// The flags a UPS may show in `ups.status` (NUT's `docs/new-drivers.txt`, "Status
/// data"); `FSD` is added by upsd when a primary has set forced shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum StatusFlag {
    /// On line (mains present).
    Ol,
    /// On battery.
    Ob,
    /// Low battery.
    Lb,
    /// High battery.
    Hb,
    /// The battery needs replacing.
    Rb,
    /// Charging.
    Chrg,
    /// Discharging.
    Dischrg,
    /// On bypass.
    Bypass,
    /// Runtime calibration.
    Cal,
    /// Output off.
    Off,
    /// Overloaded.
    Over,
    /// Trimming high input voltage.
    Trim,
    /// Boosting low input voltage.
    Boost,
    /// Forced shutdown: a primary asked every upsmon on this UPS to shut down.
    Fsd,
    /// An alarm is active (`ups.alarm`).
    Alarm,
    /// A battery test is running.
    Test,
}

impl StatusFlag {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    pub fn parse(s: &str) -> Option<StatusFlag> {
        crate::names::from_name(s)
    }

    /// Every flag's name, for messages.
    pub fn names() -> &'static [&'static str] {
        crate::names::variants_of::<StatusFlag>()
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The known flags of one `ups.status` value (unknown words, such as dummy-ups' `WAIT`,
/// are ignored: they say nothing about these flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status(u32);

impl Status {
    pub fn parse(value: &str) -> Status {
        Status(
            value
                .split_ascii_whitespace()
                .filter_map(StatusFlag::parse)
                .fold(0, |bits, f| bits | f.bit()),
        )
    }

    pub fn has(self, flag: StatusFlag) -> bool {
        self.0 & flag.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn a_var_line_gives_its_quoted_value_with_spaces_kept() {
        let w = words(r#"VAR ups-b3 ups.model "Smart-UPS  1500""#);
        assert_eq!(var_of(&w, "ups-b3"), Some(("ups.model", "Smart-UPS  1500")));
        assert_eq!(var_of(&w, "other"), None);
    }

    #[test]
    fn backslashes_escape_quotes_and_themselves() {
        // As upsd sent a manufacturer written `Acme "Power" Co`, and one whose driver kept
        // the backslashes of its own file.
        assert_eq!(
            words(r#"VAR ups ups.mfr "Acme \"Power\" Co""#)[3],
            r#"Acme "Power" Co"#
        );
        assert_eq!(
            words(r#"VAR ups device.mfr "Acme \\\"Power\\\" Co""#)[3],
            r#"Acme \"Power\" Co"#
        );
        assert_eq!(words(r"a\ b c"), ["a b", "c"]);
    }

    #[test]
    fn an_empty_quoted_value_is_a_word_and_runs_of_spaces_are_one_separator() {
        assert_eq!(words("VAR  ups\tx  \"\""), ["VAR", "ups", "x", ""]);
    }

    #[test]
    fn malformed_lines_are_errors_not_guesses() {
        assert_eq!(
            split_words(r#"VAR ups x "unterminated"#),
            Err(ParseError::Unterminated)
        );
        assert_eq!(split_words(r"VAR ups x \"), Err(ParseError::DanglingEscape));
        assert_eq!(split_words("   "), Err(ParseError::Empty));
        assert_eq!(split_words("VAR ups\0x"), Err(ParseError::Control(0)));
    }

    #[test]
    fn quoting_a_word_round_trips_through_the_parser() {
        for w in ["plain", "with space", r#"q"uo\te"#, ""] {
            assert_eq!(words(&format!("SET VAR ups x {}", quote(w)))[4], w);
        }
    }

    #[test]
    fn err_answers_are_read_by_code_and_unknown_codes_kept_as_other() {
        let e = err_of(&words("ERR ACCESS-DENIED")).unwrap();
        assert_eq!(e.code, NutCode::AccessDenied);
        assert_eq!(e.code.as_str(), "ACCESS-DENIED");
        assert_eq!(
            err_of(&words("ERR DATA-STALE")).unwrap().code,
            NutCode::DataStale
        );
        let odd = err_of(&words("ERR SOMETHING-NEW extra")).unwrap();
        assert_eq!(odd.code, NutCode::Other);
        assert_eq!(odd.line, "ERR SOMETHING-NEW extra");
        assert!(err_of(&words("OK")).is_none());
        assert!(NutCode::DriverNotConnected.is_no_data());
        assert!(!NutCode::AccessDenied.is_no_data());
    }

    #[test]
    fn status_flags_are_read_whatever_their_order_and_unknown_words_ignored() {
        let s = Status::parse("FSD OB LB WAIT");
        assert!(s.has(StatusFlag::Fsd));
        assert!(s.has(StatusFlag::Ob));
        assert!(s.has(StatusFlag::Lb));
        assert!(!s.has(StatusFlag::Ol));
        assert!(!Status::parse("OL CHRG").has(StatusFlag::Ob));
        // A flag is a whole word: "OBX" is not OB, lower case is not a flag.
        assert_eq!(Status::parse("OBX ob"), Status::default());
    }

    #[test]
    fn status_flag_names_are_nuts_own() {
        assert_eq!(StatusFlag::parse("DISCHRG"), Some(StatusFlag::Dischrg));
        assert_eq!(StatusFlag::Over.as_str(), "OVER");
        assert_eq!(StatusFlag::names().len(), 16);
        assert!(StatusFlag::names().contains(&"RB"));
    }
}
