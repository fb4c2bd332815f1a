//! The field names of a `#[derive(Deserialize)]` struct, read from what serde passes to
//! `deserialize_struct`, so a key of another step or source type can be named as such. Written here
//! because it is a dozen lines; `serde-aux`'s `serde_introspect` does the same.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;

/// The fields `T` deserializes from (empty if `T` is not a struct).
pub fn of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder {
        fields: &mut fields,
    });
    fields
}

struct Recorder<'a> {
    fields: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.fields = fields;
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Raw {
        url: Option<String>,
        #[serde(rename = "type")]
        kind: Option<String>,
    }

    #[test]
    fn a_structs_keys_are_read_as_written() {
        assert_eq!(super::of::<Raw>(), &["url", "type"]);
        assert!(super::of::<String>().is_empty());
    }
}
