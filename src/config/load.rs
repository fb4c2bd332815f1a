//! Reading the file: the `config` crate merges the TOML file with `FIREBREAK__...`
//! environment overrides; serde builds the raw structs while `serde_ignored` collects every
//! unknown key; `toml_edit` spans turn key paths into line numbers.

use super::collect::{clean_serde_message, ignored_path, typed_path};
use super::raw::RawConfig;
use super::validate::validate;
use super::{model::Config, ConfigError, Problem};
use std::collections::HashMap;
use std::path::Path;

/// A loaded, valid config and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Loads and validates the file at `path`, with overrides from the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: origin.clone(),
        errors: vec![Problem::new("", format!("cannot read {origin}: {e}"))],
        warnings: vec![],
    })?;
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("FIREBREAK__"))
        .collect();
    load_str(&text, &origin, env)
}

/// Loads and validates config text; `env` holds `FIREBREAK__SECTION__KEY` overrides.
pub fn load_str(
    text: &str,
    origin: &str,
    env: HashMap<String, String>,
) -> Result<Loaded, ConfigError> {
    let fail = |errors: Vec<Problem>, warnings: Vec<Problem>| ConfigError {
        origin: origin.to_string(),
        errors,
        warnings,
    };

    // Syntax first, with toml_edit's own located message.
    let doc = match toml_edit::Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = e.message().trim().to_string();
            return Err(fail(
                vec![Problem {
                    path: String::new(),
                    message: format!("TOML syntax: {msg}"),
                    line,
                }],
                vec![],
            ));
        }
    };

    let env_keys: Vec<String> = env.keys().cloned().collect();
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("FIREBREAK")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build();
    let merged = match built {
        Ok(m) => m,
        Err(e) => return Err(fail(vec![Problem::new("", e.to_string())], vec![])),
    };

    let mut unknown = Vec::new();
    let raw: RawConfig = {
        let mut on_unknown = |p: serde_ignored::Path<'_>| unknown.push(ignored_path(&p));
        let ignored = serde_ignored::Deserializer::new(merged, &mut on_unknown);
        match serde_path_to_error::deserialize(ignored) {
            Ok(r) => r,
            Err(e) => {
                let path = typed_path(e.path());
                let mut p = Problem::new(path, clean_serde_message(&e.inner().to_string()));
                p.line = locate(&doc, text, &p.path);
                return Err(fail(vec![p], vec![]));
            }
        }
    };

    let mut errors: Vec<Problem> = unknown
        .into_iter()
        .map(|path| {
            let key = path.rsplit('.').next().unwrap_or(&path).to_string();
            Problem::new(path, format!("unknown key `{key}`"))
        })
        .collect();
    let v = validate(&raw);
    errors.extend(v.errors);
    let mut warnings = v.warnings;
    for p in errors.iter_mut().chain(warnings.iter_mut()) {
        p.line = locate(&doc, text, &p.path);
    }
    // In file order, so the list reads top to bottom; problems without a line last.
    errors.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    warnings.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
    if !env_keys.is_empty() {
        tracing::debug!(keys = ?env_keys, "config overrides from the environment");
    }
    match v.config {
        Some(config) if errors.is_empty() => Ok(Loaded { config, warnings }),
        _ => Err(fail(errors, warnings)),
    }
}

/// 1-based line of byte `offset`. The end of a text that ends in a newline (where
/// toml_edit places "unclosed array" and the like) counts as its last line, not one past
/// it (found by the cargo-fuzz `config` target).
fn line_of(text: &str, offset: usize) -> usize {
    let line = text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1;
    line.min(text.lines().count().max(1))
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &r[end + 1..];
        }
    }
    out
}

/// Line of the deepest part of `path` present in the file (the key itself when it is there,
/// else the table it belongs in).
fn locate(doc: &toml_edit::Document<&str>, text: &str, path: &str) -> Option<usize> {
    use toml_edit::{Item, Table, Value};
    #[derive(Clone, Copy)]
    enum Node<'a> {
        Table(&'a Table),
        Item(&'a Item),
        Value(&'a Value),
    }
    let mut node = Node::Table(doc.as_table());
    let mut best: Option<usize> = None;
    let mut mark = |span: Option<std::ops::Range<usize>>| {
        if let Some(s) = span {
            best = Some(s.start);
        }
    };
    for seg in segments(path) {
        // Normalise: an item holding a table or value is looked into as such.
        let node_now = match node {
            Node::Item(Item::Table(t)) => Node::Table(t),
            Node::Item(Item::Value(v)) => Node::Value(v),
            other => other,
        };
        let next = match (node_now, seg) {
            (Node::Table(t), Seg::Key(k)) => t.get_key_value(k).map(|(key, item)| {
                mark(key.span().or_else(|| item.span()));
                Node::Item(item)
            }),
            (Node::Item(Item::ArrayOfTables(a)), Seg::Index(i)) => a.get(i).map(|t| {
                mark(t.span());
                Node::Table(t)
            }),
            (Node::Value(Value::InlineTable(t)), Seg::Key(k)) => {
                t.get_key_value(k).map(|(key, item)| {
                    mark(key.span().or_else(|| item.span()));
                    Node::Item(item)
                })
            }
            (Node::Value(Value::Array(a)), Seg::Index(i)) => a.get(i).map(|val| {
                mark(val.span());
                Node::Value(val)
            }),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    best.map(|b| line_of(text, b))
}
