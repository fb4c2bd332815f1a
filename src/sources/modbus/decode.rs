//! Register words to engineering values: type, word order, bit, scale and offset.

use crate::config::{RegType, RegisterSpec, WordOrder};

/// Whether `words` hold a classic "no data" pattern for the sensor's type: 0xFFFF for
/// unsigned values and bit flags (a status word of all ones would claim every flag),
/// 0x8000 / 0x8000_0000 for signed values, NaN for f32. Checked before scaling, because a
/// scaled 0xFFFF (6553.5 C) may still look like a number to a range check.
pub fn is_no_data(words: &[u16], spec: &RegisterSpec) -> bool {
    let u32_of = |w: &[u16]| -> u32 {
        let (hi, lo) = match spec.word_order {
            WordOrder::HighFirst => (w[0], w[1]),
            WordOrder::LowFirst => (w[1], w[0]),
        };
        (u32::from(hi) << 16) | u32::from(lo)
    };
    if spec.bit.is_some() {
        return words.iter().all(|&w| w == 0xFFFF);
    }
    match spec.kind {
        RegType::U16 => words[0] == 0xFFFF,
        RegType::I16 => words[0] == 0x8000,
        RegType::U32 => u32_of(words) == 0xFFFF_FFFF,
        RegType::I32 => u32_of(words) == 0x8000_0000,
        RegType::F32 => f32::from_bits(u32_of(words)).is_nan(),
    }
}

/// Decodes `words` (exactly `spec.kind.width()` of them, in register order) into a value.
pub fn decode(words: &[u16], spec: &RegisterSpec) -> f64 {
    if spec.bit.is_some() {
        return raw(words, spec);
    }
    raw(words, spec) * spec.scale + spec.offset
}

/// The value as the device sent it: the integer (or f32) the words hold, or the bit,
/// before `scale` and `offset`. A sensor's `sentinels` are compared with this.
pub fn raw(words: &[u16], spec: &RegisterSpec) -> f64 {
    let u32_of = |w: &[u16]| -> u32 {
        let (hi, lo) = match spec.word_order {
            WordOrder::HighFirst => (w[0], w[1]),
            WordOrder::LowFirst => (w[1], w[0]),
        };
        (u32::from(hi) << 16) | u32::from(lo)
    };
    if let Some(bit) = spec.bit {
        let bits: u32 = match spec.kind {
            RegType::U16 | RegType::I16 => u32::from(words[0]),
            _ => u32_of(words),
        };
        return f64::from((bits >> bit) & 1);
    }
    match spec.kind {
        RegType::U16 => f64::from(words[0]),
        RegType::I16 => f64::from(words[0] as i16),
        RegType::U32 => f64::from(u32_of(words)),
        RegType::I32 => f64::from(u32_of(words) as i32),
        RegType::F32 => f64::from(f32::from_bits(u32_of(words))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Table;

    fn reg(kind: RegType, word_order: WordOrder, scale: f64, bit: Option<u8>) -> RegisterSpec {
        RegisterSpec {
            table: Table::Holding,
            address: 0,
            kind,
            word_order,
            scale,
            offset: 0.0,
            bit,
        }
    }

    #[test]
    fn signed_tenths_decode_negative_temperatures() {
        let v = decode(
            &[0xFFCE],
            &reg(RegType::I16, WordOrder::HighFirst, 0.1, None),
        );
        assert!((v - -5.0).abs() < 1e-9, "{v}");
    }

    #[test]
    fn u32_runtime_spans_two_registers_in_either_word_order() {
        let hi = decode(
            &[0x0001, 0x1170],
            &reg(RegType::U32, WordOrder::HighFirst, 1.0, None),
        );
        assert_eq!(hi, 70_000.0);
        let lo = decode(
            &[0x1170, 0x0001],
            &reg(RegType::U32, WordOrder::LowFirst, 1.0, None),
        );
        assert_eq!(lo, 70_000.0);
    }

    #[test]
    fn f32_and_i32_decode() {
        let bits = 23.5f32.to_bits();
        let words = [(bits >> 16) as u16, bits as u16];
        assert_eq!(
            decode(&words, &reg(RegType::F32, WordOrder::HighFirst, 1.0, None)),
            23.5
        );
        let neg = (-2i32) as u32;
        assert_eq!(
            decode(
                &[(neg >> 16) as u16, neg as u16],
                &reg(RegType::I32, WordOrder::HighFirst, 1.0, None)
            ),
            -2.0
        );
    }

    #[test]
    fn a_bit_of_a_status_word_is_zero_or_one() {
        let spec = reg(RegType::U32, WordOrder::HighFirst, 1.0, Some(2));
        assert_eq!(decode(&[0, 0b110], &spec), 1.0);
        assert_eq!(decode(&[0, 0b010], &spec), 0.0);
    }

    #[test]
    fn classic_no_data_patterns_are_recognised_per_type() {
        let r = |k| reg(k, WordOrder::HighFirst, 0.1, None);
        assert!(is_no_data(&[0xFFFF], &r(RegType::U16)));
        assert!(!is_no_data(&[0xFFFE], &r(RegType::U16)));
        assert!(is_no_data(&[0x8000], &r(RegType::I16)));
        // -0.1 C is a reading, not "no data".
        assert!(!is_no_data(&[0xFFFF], &r(RegType::I16)));
        assert!(is_no_data(&[0xFFFF, 0xFFFF], &r(RegType::U32)));
        assert!(!is_no_data(&[0x0000, 0xFFFF], &r(RegType::U32)));
        assert!(is_no_data(&[0x8000, 0x0000], &r(RegType::I32)));
        assert!(is_no_data(
            &[0x0000, 0x8000],
            &reg(RegType::I32, WordOrder::LowFirst, 1.0, None)
        ));
        let nan = f32::NAN.to_bits();
        assert!(is_no_data(
            &[(nan >> 16) as u16, nan as u16],
            &r(RegType::F32)
        ));
        assert!(!is_no_data(&[0x41BC, 0x0000], &r(RegType::F32)));
        let flag = reg(RegType::U32, WordOrder::HighFirst, 1.0, Some(2));
        assert!(is_no_data(&[0xFFFF, 0xFFFF], &flag));
        assert!(!is_no_data(&[0x0000, 0x0004], &flag));
    }

    #[test]
    fn scale_and_offset_apply() {
        let mut spec = reg(RegType::U16, WordOrder::HighFirst, 0.0078125, None);
        spec.offset = -10.0;
        assert_eq!(decode(&[3200], &spec), 15.0);
    }
}
