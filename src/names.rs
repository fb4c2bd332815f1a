//! Enum names derived from serde: an enum's `#[serde(rename...)]` attributes are its only
//! string table. `as_str` and `parse` of the enums that appear in events, the status
//! document, config and metrics labels are thin wrappers over these helpers, so the name
//! an enum has in JSON and the name it has anywhere else cannot drift apart.
//!
//! Design: serde rather than a second derive crate (strum): these enums already carry
//! serde attributes wherever they reach JSON (events, status, journal), and a second set
//! of name attributes (`#[strum(serialize = ..)]`) would be a second table to keep in step
//! with the first, which is the drift this module exists to prevent. The helpers allocate
//! nothing: serde hands a unit variant's name over as `&'static str`, and the list of
//! names is the `VARIANTS` constant serde's derive reports in an unknown-variant error.

use serde::de::value::{MapDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// The serde name of a unit variant (`SensorState::Ok` → `"ok"`); `""` for a value that
/// is not a unit variant (the round-trip tests check that every derived enum has names).
pub fn name_of<T: Serialize + ?Sized>(value: &T) -> &'static str {
    value.serialize(UnitName).unwrap_or("")
}

/// The unit variant whose serde name is `name`; `None` for any other string.
pub fn from_name<T: DeserializeOwned>(name: &str) -> Option<T> {
    T::deserialize(StrDeserializer::<de::value::Error>::new(name)).ok()
}

/// Every serde name of an enum of unit variants, in declaration order.
pub fn variants_of<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(StrDeserializer::<Probe>::new(PROBE)) {
        Err(Probe(Some(names))) => names,
        _ => &[],
    }
}

/// Every value of an enum of unit variants, in declaration order.
pub fn all<T: DeserializeOwned>() -> impl Iterator<Item = T> {
    variants_of::<T>().iter().filter_map(|n| from_name(n))
}

/// Every tag of an internally tagged enum (`#[serde(tag = "event")]`), in declaration
/// order.
pub fn tags_of<T: DeserializeOwned>(tag: &'static str) -> &'static [&'static str] {
    let fields = MapDeserializer::<_, Probe>::new(std::iter::once((tag, PROBE)));
    match T::deserialize(fields) {
        Err(Probe(Some(names))) => names,
        _ => &[],
    }
}

/// The tag an internally tagged enum writes for `value` (`Event::ZoneLevel { .. }` →
/// `"zone_level"`); `""` when `value` writes no such tag.
pub fn tag_of<T: Serialize + DeserializeOwned>(value: &T, tag: &'static str) -> &'static str {
    value
        .serialize(TagName {
            tag,
            names: tags_of::<T>(tag),
        })
        .unwrap_or("")
}

/// Matches no variant: the derive then answers with its list of names.
const PROBE: &str = "\u{0}";

/// Deserialisation error that keeps the list of expected variants.
#[derive(Debug)]
struct Probe(Option<&'static [&'static str]>);

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("variant names probe")
    }
}

impl std::error::Error for Probe {}

impl de::Error for Probe {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Probe(None)
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Probe(Some(expected))
    }
}

/// Serialisation error: the value is not what the helper reads names from.
#[derive(Debug)]
pub struct NotAName;

impl fmt::Display for NotAName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a named variant")
    }
}

impl std::error::Error for NotAName {}

impl ser::Error for NotAName {
    fn custom<M: fmt::Display>(_: M) -> Self {
        NotAName
    }
}

/// Generates the `Serializer` methods that refuse everything.
macro_rules! refuse {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Self::Ok, Self::Error> {
            Err(NotAName)
        })*
    };
}

/// Refuses compound values; `$ok` is the serializer's `Ok`.
macro_rules! refuse_compound {
    ($ok:ty) => {
        type SerializeSeq = Impossible<$ok, NotAName>;
        type SerializeTuple = Impossible<$ok, NotAName>;
        type SerializeTupleStruct = Impossible<$ok, NotAName>;
        type SerializeTupleVariant = Impossible<$ok, NotAName>;
        type SerializeMap = Impossible<$ok, NotAName>;
        type SerializeStructVariant = Impossible<$ok, NotAName>;

        refuse! {
            serialize_bool(bool);
            serialize_i8(i8);
            serialize_i16(i16);
            serialize_i32(i32);
            serialize_i64(i64);
            serialize_u8(u8);
            serialize_u16(u16);
            serialize_u32(u32);
            serialize_u64(u64);
            serialize_f32(f32);
            serialize_f64(f64);
            serialize_char(char);
            serialize_bytes(&[u8]);
            serialize_none();
            serialize_unit();
            serialize_unit_struct(&'static str);
        }

        fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<Self::Ok, Self::Error> {
            Err(NotAName)
        }

        fn serialize_newtype_variant<V: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &V,
        ) -> Result<Self::Ok, Self::Error> {
            Err(NotAName)
        }

        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
            Err(NotAName)
        }

        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
            Err(NotAName)
        }

        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Self::Error> {
            Err(NotAName)
        }

        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Self::Error> {
            Err(NotAName)
        }

        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
            Err(NotAName)
        }

        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Self::Error> {
            Err(NotAName)
        }
    };
}

/// Answers a unit variant's name.
struct UnitName;

impl ser::Serializer for UnitName {
    type Ok = &'static str;
    type Error = NotAName;
    type SerializeStruct = Impossible<&'static str, NotAName>;

    refuse_compound!(&'static str);

    fn serialize_str(self, _: &str) -> Result<Self::Ok, Self::Error> {
        Err(NotAName)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        Ok(variant)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Err(NotAName)
    }
}

/// Answers the tag an internally tagged enum writes, as the `&'static str` of its list
/// of tags (the derive writes the tag as a plain string). The other fields are skipped,
/// not serialised.
struct TagName {
    tag: &'static str,
    names: &'static [&'static str],
}

struct TagField {
    tag: &'static str,
    names: &'static [&'static str],
    found: Option<&'static str>,
}

impl ser::Serializer for TagName {
    type Ok = &'static str;
    type Error = NotAName;
    type SerializeStruct = TagField;

    refuse_compound!(&'static str);

    fn serialize_str(self, _: &str) -> Result<Self::Ok, Self::Error> {
        Err(NotAName)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        Err(NotAName)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Ok(TagField {
            tag: self.tag,
            names: self.names,
            found: None,
        })
    }
}

impl ser::SerializeStruct for TagField {
    type Ok = &'static str;
    type Error = NotAName;

    fn serialize_field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), Self::Error> {
        if key == self.tag && self.found.is_none() {
            self.found = Some(value.serialize(OneOf(self.names))?);
        }
        Ok(())
    }

    fn end(self) -> Result<Self::Ok, Self::Error> {
        self.found.ok_or(NotAName)
    }
}

/// Answers the entry of a list of names equal to the string serialised.
struct OneOf(&'static [&'static str]);

impl ser::Serializer for OneOf {
    type Ok = &'static str;
    type Error = NotAName;
    type SerializeStruct = Impossible<&'static str, NotAName>;

    refuse_compound!(&'static str);

    fn serialize_str(self, s: &str) -> Result<Self::Ok, Self::Error> {
        self.0.iter().copied().find(|n| *n == s).ok_or(NotAName)
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        Ok(variant)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &V,
    ) -> Result<Self::Ok, Self::Error> {
        value.serialize(self)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Err(NotAName)
    }
}

/// A string that must be one of an enum's names, with the error that lists them.
pub fn parse_or_list<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    from_name(s).ok_or_else(|| {
        format!(
            "unknown `{s}`; expected one of: {}",
            variants_of::<T>().join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Colour {
        Red,
        #[serde(rename = "fault:green")]
        Green,
        DeepBlue,
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged {
        First { a: u32 },
        SecondOne { b: String },
        Third,
    }

    #[test]
    fn unit_variants_have_their_serde_names_both_ways() {
        assert_eq!(name_of(&Colour::Red), "red");
        assert_eq!(name_of(&Colour::Green), "fault:green");
        assert_eq!(name_of(&Colour::DeepBlue), "deep_blue");
        assert_eq!(from_name::<Colour>("deep_blue"), Some(Colour::DeepBlue));
        assert_eq!(from_name::<Colour>("fault:green"), Some(Colour::Green));
        assert_eq!(from_name::<Colour>("green"), None);
        assert_eq!(from_name::<Colour>(""), None);
        assert_eq!(variants_of::<Colour>(), ["red", "fault:green", "deep_blue"]);
        assert_eq!(
            all::<Colour>().collect::<Vec<_>>(),
            [Colour::Red, Colour::Green, Colour::DeepBlue]
        );
        assert_eq!(
            parse_or_list::<Colour>("pink").unwrap_err(),
            "unknown `pink`; expected one of: red, fault:green, deep_blue"
        );
    }

    #[test]
    fn tagged_variants_have_their_tags() {
        assert_eq!(tags_of::<Tagged>("kind"), ["first", "second_one", "third"]);
        assert_eq!(tag_of(&Tagged::First { a: 1 }, "kind"), "first");
        assert_eq!(
            tag_of(&Tagged::SecondOne { b: "x".into() }, "kind"),
            "second_one"
        );
        assert_eq!(tag_of(&Tagged::Third, "kind"), "third");
        assert_eq!(tag_of(&Tagged::Third, "other"), "");
    }

    /// Every name parses to a variant that has that name, and every variant has one.
    fn round_trips<T>(as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>) -> usize
    where
        T: DeserializeOwned + Serialize + Copy + PartialEq + fmt::Debug,
    {
        let names = variants_of::<T>();
        assert!(
            !names.is_empty(),
            "{} has no names",
            std::any::type_name::<T>()
        );
        for name in names {
            let v = parse(name).unwrap_or_else(|| panic!("`{name}` does not parse"));
            assert_eq!(as_str(v), *name);
            assert_eq!(name_of(&v), *name);
            assert_eq!(serde_json::to_value(v).unwrap(), *name);
            assert_eq!(serde_json::from_value::<T>((*name).into()).unwrap(), v);
        }
        assert_eq!(parse("no such name"), None);
        names.len()
    }

    #[test]
    fn every_derived_enum_round_trips_through_its_names() {
        use crate::config::{Kind, OnClusterLoss, Priority, RegType, ServerState, Table};
        use crate::detect::{Cause, FaultKind, SensorState, ZoneLevel};
        use crate::dns::{RecordKind, TsigAlgorithm};
        use crate::sinks::influxdb;
        // The number of variants, so that a variant without a name cannot hide.
        assert_eq!(round_trips(FaultKind::as_str, FaultKind::parse), 15);
        assert_eq!(round_trips(SensorState::as_str, SensorState::parse), 6);
        assert_eq!(round_trips(ZoneLevel::as_str, ZoneLevel::parse), 4);
        assert_eq!(round_trips(Cause::as_str, Cause::parse), 4);
        assert_eq!(round_trips(Kind::as_str, Kind::parse), Kind::ALL.len());
        assert_eq!(round_trips(|t: RegType| name_of(&t), RegType::parse), 9);
        assert_eq!(round_trips(Table::as_str, from_name), 4);
        assert_eq!(round_trips(Priority::as_str, from_name), 2);
        assert_eq!(round_trips(ServerState::as_str, from_name), 3);
        assert_eq!(round_trips(OnClusterLoss::as_str, from_name), 2);
        assert_eq!(round_trips(TsigAlgorithm::as_str, from_name), 3);
        assert_eq!(round_trips(RecordKind::as_str, from_name), 4);
        assert_eq!(round_trips(influxdb::spool::Lane::as_str, from_name), 2);
        assert_eq!(
            round_trips(influxdb::DropReason::as_str, from_name),
            influxdb::DropReason::ALL.len()
        );
        assert_eq!(
            round_trips(influxdb::ErrorKind::as_str, from_name),
            influxdb::ErrorKind::ALL.len()
        );
        assert_eq!(
            round_trips(crate::sources::metrics::ErrorKind::as_str, from_name),
            crate::sources::metrics::ErrorKind::ALL.len()
        );
        assert_eq!(round_trips(crate::staged::Basis::as_str, from_name), 2);
        assert_eq!(round_trips(crate::incident::Stage::as_str, from_name), 3);
        assert_eq!(round_trips(crate::cluster::Role::as_str, from_name), 6);
        // The hand-kept lists of every variant hold every variant, in order.
        assert!(all::<Kind>().eq(Kind::ALL));
        assert!(all::<influxdb::DropReason>().eq(influxdb::DropReason::ALL));
        assert!(all::<influxdb::ErrorKind>().eq(influxdb::ErrorKind::ALL));
        assert!(
            all::<crate::sources::metrics::ErrorKind>().eq(crate::sources::metrics::ErrorKind::ALL)
        );
    }

    #[test]
    fn every_reason_round_trips_and_every_fault_is_a_reason() {
        use crate::detect::{FaultKind, Reason};
        let mut n = 0;
        for r in Reason::all() {
            let name = r.as_str();
            let back = Reason::parse(name).unwrap_or_else(|| panic!("`{name}` does not parse"));
            assert_eq!(back.as_str(), name);
            assert_eq!(serde_json::to_value(r).unwrap(), name);
            assert_eq!(serde_json::from_value::<Reason>(name.into()).unwrap(), back);
            n += 1;
        }
        assert!(n >= 4 + 9 + 9, "{n} reasons");
        for f in all::<FaultKind>() {
            assert_eq!(Reason::parse(f.as_str()), Some(Reason::Fault(f)));
        }
        assert_eq!(
            Reason::parse("fault:not_numeric"),
            Some(Reason::Fault(FaultKind::NotNumeric))
        );
        assert!(serde_json::from_value::<Reason>("above:nothing".into()).is_err());
    }

    #[test]
    fn values_that_are_not_unit_variants_have_no_name() {
        assert_eq!(name_of(&3u8), "");
        assert_eq!(name_of("red"), "");
        assert!(variants_of::<u8>().is_empty());
    }
}
