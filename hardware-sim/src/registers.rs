//! Encoding engineering values into 16-bit Modbus registers, and back.
//!
//! `raw = round((value - offset) / scale)`, saturated to the type's range; `f32` is not
//! rounded. 16-bit words are what goes on the wire (big-endian per word is the codec's job);
//! 32-bit values span two consecutive registers in the configured word order.

use std::fmt;
use std::str::FromStr;

/// Errors of this module: unknown names in a scenario, or a wrong word count to decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistersError {
    #[error("unknown type `{0}` (expected u16, i16, u32, i32 or f32)")]
    UnknownType(String),
    #[error("unknown word order `{0}` (expected high_first or low_first)")]
    UnknownWordOrder(String),
    #[error("unknown table `{0}` (expected holding, input, coil or discrete)")]
    UnknownTable(String),
    #[error("{data_type} takes {expected} register(s), got {got}")]
    WrongWordCount {
        data_type: DataType,
        expected: usize,
        got: usize,
    },
}

/// Which Modbus register table a value lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Function 3 reads, functions 6 and 16 write.
    Holding,
    /// Function 4 reads; read-only by protocol.
    Input,
    /// Single bits, function 1 reads (writes to coils are not served).
    Coil,
    /// Single bits, function 2 reads; read-only by protocol.
    Discrete,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Holding => "holding",
            Table::Input => "input",
            Table::Coil => "coil",
            Table::Discrete => "discrete",
        }
    }

    /// Coils and discrete inputs: one bit per address, 0 or 1.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Table {
    type Err = RegistersError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "holding" => Ok(Table::Holding),
            "input" => Ok(Table::Input),
            "coil" => Ok(Table::Coil),
            "discrete" => Ok(Table::Discrete),
            other => Err(RegistersError::UnknownTable(other.to_owned())),
        }
    }
}

/// The on-wire type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    U16,
    I16,
    U32,
    I32,
    F32,
}

impl DataType {
    /// Number of 16-bit registers the type occupies.
    pub fn width(self) -> u16 {
        match self {
            DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataType::U16 => "u16",
            DataType::I16 => "i16",
            DataType::U32 => "u32",
            DataType::I32 => "i32",
            DataType::F32 => "f32",
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = RegistersError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "u16" => Ok(DataType::U16),
            "i16" => Ok(DataType::I16),
            "u32" => Ok(DataType::U32),
            "i32" => Ok(DataType::I32),
            "f32" => Ok(DataType::F32),
            other => Err(RegistersError::UnknownType(other.to_owned())),
        }
    }
}

/// Word order of 32-bit values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// High word in register n, low word in n+1 (the common case).
    #[default]
    HighFirst,
    /// Low word in register n: "swapped" devices.
    LowFirst,
}

impl WordOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            WordOrder::HighFirst => "high_first",
            WordOrder::LowFirst => "low_first",
        }
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WordOrder {
    type Err = RegistersError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high_first" => Ok(WordOrder::HighFirst),
            "low_first" => Ok(WordOrder::LowFirst),
            other => Err(RegistersError::UnknownWordOrder(other.to_owned())),
        }
    }
}

/// The 1 or 2 registers a value encodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    words: [u16; 2],
    len: u8,
}

impl Words {
    pub fn one(w: u16) -> Self {
        Words {
            words: [w, 0],
            len: 1,
        }
    }

    fn two(order: WordOrder, v: u32) -> Self {
        // Truncation is the point: split a 32-bit value into its two halves.
        let (high, low) = ((v >> 16) as u16, (v & 0xFFFF) as u16);
        let words = match order {
            WordOrder::HighFirst => [high, low],
            WordOrder::LowFirst => [low, high],
        };
        Words { words, len: 2 }
    }

    pub fn as_slice(&self) -> &[u16] {
        &self.words[..usize::from(self.len)]
    }
}

/// How one signal is laid out in registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Encoding {
    pub data_type: DataType,
    pub word_order: WordOrder,
    pub scale: f64,
    pub offset: f64,
}

impl Encoding {
    pub fn new(data_type: DataType) -> Self {
        Encoding {
            data_type,
            word_order: WordOrder::HighFirst,
            scale: 1.0,
            offset: 0.0,
        }
    }

    #[must_use]
    pub fn scaled(mut self, scale: f64, offset: f64) -> Self {
        self.scale = scale;
        self.offset = offset;
        self
    }

    #[must_use]
    pub fn word_order(mut self, order: WordOrder) -> Self {
        self.word_order = order;
        self
    }

    pub fn width(&self) -> u16 {
        self.data_type.width()
    }

    /// Engineering value to registers. Out-of-range values saturate; NaN encodes as 0.
    pub fn encode(&self, value: f64) -> Words {
        let raw = (value - self.offset) / self.scale;
        // Design: the `as` casts below are float-to-int casts, which Rust defines as
        // saturating (NaN -> 0); the explicit clamp keeps that visible to the reader.
        match self.data_type {
            DataType::U16 => Words::one(saturate(raw.round(), 0.0, f64::from(u16::MAX)) as u16),
            DataType::I16 => {
                Words::one(
                    saturate(raw.round(), f64::from(i16::MIN), f64::from(i16::MAX)) as i16 as u16,
                )
            }
            DataType::U32 => Words::two(
                self.word_order,
                saturate(raw.round(), 0.0, f64::from(u32::MAX)) as u32,
            ),
            DataType::I32 => Words::two(
                self.word_order,
                saturate(raw.round(), f64::from(i32::MIN), f64::from(i32::MAX)) as i32 as u32,
            ),
            DataType::F32 => Words::two(self.word_order, (raw as f32).to_bits()),
        }
    }

    /// Registers to engineering value: the inverse of [`Encoding::encode`] up to rounding.
    pub fn decode(&self, words: &[u16]) -> Result<f64, RegistersError> {
        let expected = usize::from(self.width());
        if words.len() != expected {
            return Err(RegistersError::WrongWordCount {
                data_type: self.data_type,
                expected,
                got: words.len(),
            });
        }
        let joined = || {
            let (high, low) = match self.word_order {
                WordOrder::HighFirst => (words[0], words[1]),
                WordOrder::LowFirst => (words[1], words[0]),
            };
            (u32::from(high) << 16) | u32::from(low)
        };
        let raw = match self.data_type {
            DataType::U16 => f64::from(words[0]),
            DataType::I16 => f64::from(words[0] as i16),
            DataType::U32 => f64::from(joined()),
            DataType::I32 => f64::from(joined() as i32),
            DataType::F32 => f64::from(f32::from_bits(joined())),
        };
        Ok(raw * self.scale + self.offset)
    }
}

fn saturate(raw: f64, min: f64, max: f64) -> f64 {
    if raw.is_nan() {
        0.0
    } else {
        raw.clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minus_five_degrees_at_tenths_is_two_complement_ffce() {
        let enc = Encoding::new(DataType::I16).scaled(0.1, 0.0);
        assert_eq!(enc.encode(-5.0).as_slice(), &[0xFFCE]);
        assert_eq!(enc.decode(&[0xFFCE]).unwrap(), -5.0);
    }

    #[test]
    fn seventy_thousand_seconds_spans_two_registers_high_word_first() {
        let enc = Encoding::new(DataType::U32);
        assert_eq!(enc.encode(70_000.0).as_slice(), &[0x0001, 0x1170]);
        assert_eq!(enc.decode(&[0x0001, 0x1170]).unwrap(), 70_000.0);
    }

    #[test]
    fn low_first_swaps_the_two_words() {
        let enc = Encoding::new(DataType::U32).word_order(WordOrder::LowFirst);
        assert_eq!(enc.encode(70_000.0).as_slice(), &[0x1170, 0x0001]);
        assert_eq!(enc.decode(&[0x1170, 0x0001]).unwrap(), 70_000.0);
    }

    #[test]
    fn f32_encodes_ieee_bits_in_both_word_orders() {
        // 1.5f32 = 0x3FC0_0000
        let high = Encoding::new(DataType::F32);
        assert_eq!(high.encode(1.5).as_slice(), &[0x3FC0, 0x0000]);
        let low = high.word_order(WordOrder::LowFirst);
        assert_eq!(low.encode(1.5).as_slice(), &[0x0000, 0x3FC0]);
        // -23.25 = 0xC1BA_0000, not rounded to an integer
        assert_eq!(high.encode(-23.25).as_slice(), &[0xC1BA, 0x0000]);
        assert_eq!(low.decode(&[0x0000, 0xC1BA]).unwrap(), -23.25);
    }

    #[test]
    fn f32_applies_scale_and_offset_without_rounding() {
        let enc = Encoding::new(DataType::F32).scaled(0.5, 10.0);
        // (11.25 - 10) / 0.5 = 2.5 = 0x4020_0000
        assert_eq!(enc.encode(11.25).as_slice(), &[0x4020, 0x0000]);
    }

    #[test]
    fn values_out_of_range_saturate_to_the_type_limits() {
        let u16_enc = Encoding::new(DataType::U16);
        assert_eq!(u16_enc.encode(-3.0).as_slice(), &[0]);
        assert_eq!(u16_enc.encode(1e9).as_slice(), &[0xFFFF]);
        assert_eq!(u16_enc.encode(f64::NAN).as_slice(), &[0]);

        let i16_enc = Encoding::new(DataType::I16).scaled(0.1, 0.0);
        assert_eq!(i16_enc.encode(5000.0).as_slice(), &[0x7FFF]);
        assert_eq!(i16_enc.encode(-5000.0).as_slice(), &[0x8000]);

        let u32_enc = Encoding::new(DataType::U32);
        assert_eq!(u32_enc.encode(-1.0).as_slice(), &[0, 0]);
        assert_eq!(u32_enc.encode(1e12).as_slice(), &[0xFFFF, 0xFFFF]);

        let i32_enc = Encoding::new(DataType::I32);
        assert_eq!(i32_enc.encode(-1e12).as_slice(), &[0x8000, 0x0000]);
        assert_eq!(i32_enc.encode(1e12).as_slice(), &[0x7FFF, 0xFFFF]);
        assert_eq!(i32_enc.encode(-1.0).as_slice(), &[0xFFFF, 0xFFFF]);
    }

    #[test]
    fn scale_and_offset_round_to_nearest_raw_value() {
        // battery temperature / 128
        let enc = Encoding::new(DataType::I16).scaled(0.0078125, 0.0);
        assert_eq!(enc.encode(25.0).as_slice(), &[3200]);
        let enc = Encoding::new(DataType::U16).scaled(0.1, -40.0);
        // (23.04 + 40) / 0.1 = 630.4 -> 630
        assert_eq!(enc.encode(23.04).as_slice(), &[630]);
        assert!((enc.decode(&[630]).unwrap() - 23.0).abs() < 1e-9);
    }

    #[test]
    fn decode_rejects_a_wrong_word_count() {
        let enc = Encoding::new(DataType::U32);
        assert!(matches!(
            enc.decode(&[1]),
            Err(RegistersError::WrongWordCount {
                expected: 2,
                got: 1,
                ..
            })
        ));
    }

    #[test]
    fn names_parse_and_unknown_names_are_errors() {
        assert_eq!("i32".parse::<DataType>().unwrap(), DataType::I32);
        assert_eq!(
            "u17".parse::<DataType>(),
            Err(RegistersError::UnknownType("u17".into()))
        );
        assert_eq!(
            "low_first".parse::<WordOrder>().unwrap(),
            WordOrder::LowFirst
        );
        assert_eq!("coil".parse::<Table>().unwrap(), Table::Coil);
        assert_eq!("discrete".parse::<Table>().unwrap(), Table::Discrete);
        assert!("coils".parse::<Table>().is_err());
    }
}
