//! Register words to engineering values: type, word order, bit, scale and offset; and
//! back ([`encode`]), for the `modbus_write` step.

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

/// The words that hold the engineering value `value` for `spec`: the inverse of
/// [`decode`] (offset and scale undone, then the type and word order). An integer type
/// takes only a value that lands on a whole raw number within the type's range; `bit`
/// specs are not written (a bit of a status word would be a read-modify-write).
pub fn encode(value: f64, spec: &RegisterSpec) -> Result<Vec<u16>, String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a finite number"));
    }
    if spec.bit.is_some() {
        return Err("a bit of a register cannot be written on its own".into());
    }
    let raw = (value - spec.offset) / spec.scale;
    let words32 = |v: u32| -> Vec<u16> {
        let (hi, lo) = ((v >> 16) as u16, v as u16);
        match spec.word_order {
            WordOrder::HighFirst => vec![hi, lo],
            WordOrder::LowFirst => vec![lo, hi],
        }
    };
    let whole = |min: f64, max: f64| -> Result<i64, String> {
        let r = raw.round();
        // Scale factors such as 0.1 are not exact in binary: 23.5 / 0.1 is 234.99999999999997.
        if (raw - r).abs() > 1e-6 * r.abs().max(1.0) {
            return Err(format!(
                "{value} is not a whole number of register steps (raw {raw} with scale {} and offset {})",
                spec.scale, spec.offset
            ));
        }
        if r < min || r > max {
            return Err(format!(
                "{value} does not fit a {}: raw {r} is outside {min} to {max}",
                spec.kind.as_str()
            ));
        }
        Ok(r as i64)
    };
    Ok(match spec.kind {
        RegType::U16 => vec![whole(0.0, 65535.0)? as u16],
        RegType::I16 => vec![whole(-32768.0, 32767.0)? as i16 as u16],
        RegType::U32 => words32(whole(0.0, 4_294_967_295.0)? as u32),
        RegType::I32 => words32(whole(-2_147_483_648.0, 2_147_483_647.0)? as i32 as u32),
        RegType::F32 => {
            let f = raw as f32;
            if !f.is_finite() {
                return Err(format!("{value} does not fit an f32 (raw {raw})"));
            }
            words32(f.to_bits())
        }
    })
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

    #[test]
    fn encode_is_the_inverse_of_decode_for_every_type_and_word_order() {
        for (kind, order, scale, value) in [
            (RegType::U16, WordOrder::HighFirst, 1.0, 1.0),
            (RegType::U16, WordOrder::HighFirst, 0.1, 23.5),
            (RegType::I16, WordOrder::HighFirst, 0.1, -5.0),
            (RegType::U32, WordOrder::HighFirst, 1.0, 70_000.0),
            (RegType::U32, WordOrder::LowFirst, 1.0, 70_000.0),
            (RegType::I32, WordOrder::LowFirst, 1.0, -2.0),
            (RegType::F32, WordOrder::HighFirst, 1.0, 12.5),
            (RegType::F32, WordOrder::LowFirst, 2.0, 12.5),
        ] {
            let spec = reg(kind, order, scale, None);
            let words = encode(value, &spec).unwrap();
            assert_eq!(words.len(), kind.width() as usize);
            let back = decode(&words, &spec);
            assert!((back - value).abs() < 1e-9, "{kind:?} {value} -> {words:?} -> {back}");
        }
        let mut spec = reg(RegType::U16, WordOrder::HighFirst, 0.0078125, None);
        spec.offset = -10.0;
        assert_eq!(encode(15.0, &spec), Ok(vec![3200]));
        assert_eq!(
            encode(70_000.0, &reg(RegType::U32, WordOrder::LowFirst, 1.0, None)),
            Ok(vec![0x1170, 0x0001])
        );
    }

    #[test]
    fn encode_refuses_values_the_type_cannot_hold() {
        let u16 = reg(RegType::U16, WordOrder::HighFirst, 1.0, None);
        assert!(encode(-1.0, &u16).unwrap_err().contains("does not fit a u16"));
        assert!(encode(65536.0, &u16).is_err());
        assert!(encode(1.5, &u16)
            .unwrap_err()
            .contains("not a whole number of register steps"));
        assert!(encode(f64::NAN, &u16).is_err());
        let i16 = reg(RegType::I16, WordOrder::HighFirst, 1.0, None);
        assert!(encode(-32769.0, &i16).is_err());
        assert_eq!(encode(-32768.0, &i16), Ok(vec![0x8000]));
        let f32 = reg(RegType::F32, WordOrder::HighFirst, 1.0, None);
        assert!(encode(1e39, &f32).is_err());
        let flag = reg(RegType::U32, WordOrder::HighFirst, 1.0, Some(2));
        assert!(encode(1.0, &flag).is_err());
    }
}
