//! MQTT topic filters (MQTT 3.1.1 section 4.7): checking them and matching topics.

/// Checks a subscription filter: `+` and `#` stand alone in their level, `#` only last.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("a topic filter must not be empty".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("`#` must be a whole level and the last one (e.g. `dc1/b3/#`)".into());
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level (e.g. `dc1/+/state`)".into());
        }
    }
    if filter.contains('\0') {
        return Err("a topic filter must not contain NUL".into());
    }
    Ok(())
}

/// Whether `topic` (no wildcards) matches `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    // Topics starting with `$` are not matched by filters starting with a wildcard.
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_must_be_whole_levels() {
        assert!(check_filter("dc1/+/asd1/state").is_ok());
        assert!(check_filter("dc1/b3/#").is_ok());
        assert!(check_filter("#").is_ok());
        assert!(check_filter("dc1/b3#").is_err());
        assert!(check_filter("dc1/#/state").is_err());
        assert!(check_filter("dc1/b+/state").is_err());
        assert!(check_filter("").is_err());
    }

    #[test]
    fn single_level_wildcard_matches_one_level_and_multi_level_the_rest() {
        assert!(matches("dc1/+/state", "dc1/asd1/state"));
        assert!(!matches("dc1/+/state", "dc1/a/b/state"));
        assert!(matches("dc1/#", "dc1/a/b/state"));
        assert!(matches("dc1/#", "dc1"));
        assert!(matches("dc1/b3/state", "dc1/b3/state"));
        assert!(!matches("dc1/b3/state", "dc1/b3/state/x"));
        assert!(!matches("dc1/b3/state/x", "dc1/b3/state"));
        assert!(!matches("#", "$SYS/broker/uptime"));
    }
}
