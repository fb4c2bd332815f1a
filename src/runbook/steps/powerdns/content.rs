//! Record values as the PowerDNS API writes them (`content`): addresses as they are,
//! CNAME targets absolute (trailing dot), TXT as zone-file quoted strings of at most 255
//! bytes each. And back, so that the RRset the API returns compares with the step's
//! values the way a DNS answer does (`dns::normalise_values`).

use crate::dns::RecordKind;

/// The API `content` of one value (already normalised: see `dns::normalise_values`).
pub fn to_content(kind: RecordKind, value: &str) -> String {
    match kind {
        RecordKind::A | RecordKind::Aaaa => value.to_string(),
        RecordKind::Cname => super::absolute(value),
        RecordKind::Txt => {
            let bytes = value.as_bytes();
            let chunks: Vec<&[u8]> = if bytes.is_empty() {
                vec![bytes]
            } else {
                bytes.chunks(255).collect()
            };
            chunks
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// One character-string, quoted: `"` and `\` escaped, bytes outside printable ASCII as
/// `\DDD` (what zone files and the API accept).
fn quote(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\{b:03}")),
        }
    }
    s.push('"');
    s
}

/// The value a `content` stands for, in the form the DNS module normalises: TXT strings
/// unquoted and joined (as a DNS answer's are), the rest as they are.
pub fn from_content(kind: RecordKind, content: &str) -> String {
    match kind {
        RecordKind::Txt => unquote(content.trim()),
        _ => content.trim().to_string(),
    }
}

/// Zone-file character-strings joined: `"a\"b" "c\100"` -> `a"bcd`. Text outside quotes
/// (PowerDNS always quotes, but a hand-made record may not) is taken as it is, without the
/// spaces between strings.
fn unquote(content: &str) -> String {
    let mut out = Vec::with_capacity(content.len());
    let bytes = content.as_bytes();
    let mut i = 0;
    let mut quoted = false;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => {}
            b'\\' if i + 1 < bytes.len() => {
                let digits = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(u8::is_ascii_digit));
                match digits.and_then(|d| std::str::from_utf8(d).ok()?.parse::<u8>().ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(bytes[i + 1]);
                        i += 1;
                    }
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_values_are_quoted_escaped_and_split_at_255_bytes_and_read_back_the_same() {
        let v = "he said \"hi\" \\ ok";
        let c = to_content(RecordKind::Txt, v);
        assert_eq!(c, r#""he said \"hi\" \\ ok""#);
        assert_eq!(from_content(RecordKind::Txt, &c), v);
        let long = "x".repeat(300);
        let c = to_content(RecordKind::Txt, &long);
        assert_eq!(c, format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45)));
        assert_eq!(from_content(RecordKind::Txt, &c), long);
        let utf8 = "température";
        assert_eq!(
            from_content(RecordKind::Txt, &to_content(RecordKind::Txt, utf8)),
            utf8
        );
        // As PowerDNS 4.7 returned a TXT it was given in two strings.
        assert_eq!(
            from_content(RecordKind::Txt, r#""he said \"hi\" \\ ok" "part2""#),
            "he said \"hi\" \\ okpart2"
        );
        assert_eq!(to_content(RecordKind::Txt, ""), "\"\"");
    }

    #[test]
    fn cname_targets_are_absolute() {
        assert_eq!(
            to_content(RecordKind::Cname, "b3.example.com"),
            "b3.example.com."
        );
        assert_eq!(
            to_content(RecordKind::Cname, "b3.example.com."),
            "b3.example.com."
        );
        assert_eq!(to_content(RecordKind::A, "192.0.2.1"), "192.0.2.1");
    }
}
