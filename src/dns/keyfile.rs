//! TSIG secret files: bare base64, `algorithm:name:secret`, BIND `key` blocks and Knot YAML.

use super::*;

/// Parse a TSIG secret file and return the decoded secret. Accepted formats:
/// * a bare base64 line (`#` comment lines are ignored),
/// * `algorithm:name:base64` (the `-y` form of knsupdate/nsupdate),
/// * BIND `key "name" { algorithm hmac-sha256; secret "BASE64"; };` (tsig-keygen),
/// * Knot YAML `key:\n  - id: name\n    algorithm: hmac-sha256\n    secret: BASE64` (keymgr -t).
pub fn parse_tsig_secret(text: &str) -> Result<Vec<u8>, DnsError> {
    parse_tsig_key_file(text).map(|k| k.secret)
}

/// Like [`parse_tsig_secret`], also returning the key name and algorithm when the file has them.
pub fn parse_tsig_key_file(text: &str) -> Result<ParsedTsigKeyFile, DnsError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(DnsError::BadSecret(
            "the secret file is empty; put the base64 secret (e.g. from `keymgr -t NAME \
             hmac-sha256`) in it"
                .into(),
        ));
    }
    if text.contains('{') && find_keyword(text, "secret").is_some() {
        return parse_bind_key(text);
    }
    if text
        .lines()
        .any(|l| yaml_key_value(l).is_some_and(|(k, _)| k == "secret"))
    {
        return parse_knot_yaml_key(text);
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines.as_slice() {
        [] => Err(DnsError::BadSecret(
            "the secret file has only comments; put the base64 secret on its own line".into(),
        )),
        [line] => {
            let parts: Vec<&str> = line.split(':').collect();
            if parts.len() == 3 {
                // algorithm:name:secret
                let algorithm = parts[0].parse::<TsigAlgorithm>().map_err(|e| {
                    DnsError::BadSecret(format!("in 'algorithm:name:secret' line: {e}"))
                })?;
                Ok(ParsedTsigKeyFile {
                    name: Some(parts[1].trim().to_string()).filter(|n| !n.is_empty()),
                    algorithm: Some(algorithm),
                    secret: decode_secret(parts[2])?,
                })
            } else {
                Ok(ParsedTsigKeyFile {
                    name: None,
                    algorithm: None,
                    secret: decode_secret(line)?,
                })
            }
        }
        _ => Err(DnsError::BadSecret(format!(
            "expected one base64 line, a BIND `key {{ ... }};` block or a Knot `key:` YAML list, \
             found {} unrecognised lines",
            lines.len()
        ))),
    }
}

pub(super) fn decode_secret(s: &str) -> Result<Vec<u8>, DnsError> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let compact = compact.trim_matches(|c| c == '"' || c == '\'');
    if compact.is_empty() {
        return Err(DnsError::BadSecret("the secret is empty".into()));
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine.decode(compact).map_err(|e| {
        DnsError::BadSecret(format!(
            "the secret is not valid base64 ({e}); copy the `secret` value exactly as the \
             server has it"
        ))
    })?;
    if bytes.is_empty() {
        return Err(DnsError::BadSecret(
            "the secret decodes to zero bytes".into(),
        ));
    }
    Ok(bytes)
}

/// Strip `#`, `//` and `/* */` comments from BIND configuration text.
pub(super) fn strip_bind_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        if in_quote {
            out.push(c);
            if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                out.push(c);
            }
            '#' => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Byte offsets just after each occurrence of `word` standing as a keyword (preceded by
/// start/whitespace/`{`/`;`, followed by whitespace), outside quotes.
pub(super) fn keyword_positions(text: &str, word: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut in_quote = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            in_quote = !in_quote;
        } else if !in_quote
            && text[i..].starts_with(word)
            && (i == 0 || matches!(bytes[i - 1], b' ' | b'\t' | b'\n' | b'\r' | b'{' | b';'))
            && bytes
                .get(i + word.len())
                .is_some_and(|c| c.is_ascii_whitespace())
        {
            found.push(i + word.len());
            i += word.len();
            continue;
        }
        i += 1;
    }
    found
}

pub(super) fn find_keyword(text: &str, word: &str) -> Option<usize> {
    keyword_positions(text, word).into_iter().next()
}

/// Read one BIND value after a keyword: a quoted string or a bare token up to `;`/space/`{`.
pub(super) fn bind_value(text: &str, at: usize) -> Option<String> {
    let rest = text[at..].trim_start();
    if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"')?;
        Some(q[..end].to_string())
    } else {
        let end = rest
            .find(|c: char| c == ';' || c == '{' || c.is_whitespace())
            .unwrap_or(rest.len());
        Some(rest[..end].to_string()).filter(|v| !v.is_empty())
    }
}

pub(super) fn parse_bind_key(text: &str) -> Result<ParsedTsigKeyFile, DnsError> {
    let text = strip_bind_comments(text);
    let secrets = keyword_positions(&text, "secret");
    match secrets.len() {
        0 => {
            return Err(DnsError::BadSecret(
                "BIND key file has no `secret \"...\";` statement".into(),
            ))
        }
        1 => {}
        n => {
            return Err(DnsError::BadSecret(format!(
                "BIND key file holds {n} secrets; put exactly one key in the file"
            )))
        }
    }
    let secret = bind_value(&text, secrets[0]).ok_or_else(|| {
        DnsError::BadSecret("BIND key file: `secret` is not followed by a value".into())
    })?;
    let algorithm = find_keyword(&text, "algorithm")
        .and_then(|at| bind_value(&text, at))
        .map(|a| {
            a.parse::<TsigAlgorithm>()
                .map_err(|e| DnsError::BadSecret(format!("BIND key file: {e}")))
        })
        .transpose()?;
    let name = find_keyword(&text, "key").and_then(|at| bind_value(&text, at));
    Ok(ParsedTsigKeyFile {
        name,
        algorithm,
        secret: decode_secret(&secret)?,
    })
}

/// `key: value` of a simple YAML line (list dash allowed), comments and quotes removed.
pub(super) fn yaml_key_value(line: &str) -> Option<(String, String)> {
    let l = line.trim();
    if l.starts_with('#') {
        return None;
    }
    let l = l.strip_prefix("- ").unwrap_or(l).trim_start();
    let (k, v) = l.split_once(':')?;
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    let mut v = v.trim();
    if let Some(idx) = v.find(" #") {
        v = v[..idx].trim_end();
    }
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v);
    Some((k.to_ascii_lowercase(), v.to_string()))
}

pub(super) fn parse_knot_yaml_key(text: &str) -> Result<ParsedTsigKeyFile, DnsError> {
    let mut name = None;
    let mut algorithm = None;
    let mut secrets = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = yaml_key_value(line) else {
            continue;
        };
        match k.as_str() {
            "id" if name.is_none() => name = Some(v),
            "algorithm" if algorithm.is_none() => {
                algorithm = Some(
                    v.parse::<TsigAlgorithm>()
                        .map_err(|e| DnsError::BadSecret(format!("Knot key file: {e}")))?,
                )
            }
            "secret" => secrets.push(v),
            _ => {}
        }
    }
    if secrets.len() != 1 {
        return Err(DnsError::BadSecret(format!(
            "Knot key file holds {} secrets; put exactly one key in the file",
            secrets.len()
        )));
    }
    Ok(ParsedTsigKeyFile {
        name,
        algorithm,
        secret: decode_secret(&secrets[0])?,
    })
}
