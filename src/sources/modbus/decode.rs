//! Register words to engineering values: type, word and byte order, bit, scale and offset;
//! and back ([`encode`]), for the `modbus_write` step.

use crate::config::{ByteOrder, RegType, RegisterSpec, WordOrder};

/// The words as one unsigned integer of `words.len()` x 16 bits (up to 64): bytes swapped
/// inside each word for `byte_order = "little"`, then the most significant word first.
fn bits(words: &[u16], spec: &RegisterSpec) -> u64 {
    let word = |w: u16| match spec.byte_order {
        ByteOrder::Big => w,
        ByteOrder::Little => w.swap_bytes(),
    };
    let fold = |acc: u64, &w: &u16| (acc << 16) | u64::from(word(w));
    match spec.word_order {
        WordOrder::HighFirst => words.iter().fold(0, fold),
        WordOrder::LowFirst => words.iter().rev().fold(0, fold),
    }
}

/// The type's words of `words` (which may hold more, e.g. a fuzzer's two for a u16).
fn own<'a>(words: &'a [u16], spec: &RegisterSpec) -> &'a [u16] {
    &words[..usize::from(spec.kind.width()).min(words.len())]
}

/// Whether `words` hold a classic "no data" pattern for the sensor's type: all ones for
/// unsigned values and bit flags (a status word of all ones would claim every flag), the
/// most negative value (0x8000...) for signed ones, NaN for floats. Checked before scaling,
/// because a scaled 0xFFFF (6553.5 C) may still look like a number to a range check.
pub fn is_no_data(words: &[u16], spec: &RegisterSpec) -> bool {
    let words = own(words, spec);
    if spec.bit.is_some() {
        return words.iter().all(|&w| w == 0xFFFF);
    }
    let b = bits(words, spec);
    match spec.kind {
        RegType::U16 => b == 0xFFFF,
        RegType::I16 => b == 0x8000,
        RegType::U32 => b == 0xFFFF_FFFF,
        RegType::I32 => b == 0x8000_0000,
        RegType::U64 => b == u64::MAX,
        RegType::I64 => b == 0x8000_0000_0000_0000,
        RegType::F16 => half::f16::from_bits(b as u16).is_nan(),
        RegType::F32 => f32::from_bits(b as u32).is_nan(),
        RegType::F64 => f64::from_bits(b).is_nan(),
    }
}

/// Decodes `words` (exactly `spec.kind.width()` of them, in register order) into a value.
pub fn decode(words: &[u16], spec: &RegisterSpec) -> f64 {
    if spec.bit.is_some() {
        return raw(words, spec);
    }
    raw(words, spec) * spec.scale + spec.offset
}

/// The value as the device sent it: the integer (or float) the words hold, or the bit,
/// before `scale` and `offset`. A sensor's `sentinels` are compared with this. 64-bit
/// integers beyond 2^53 lose their last digits (an f64 carries 53 bits), far beyond any
/// sensor's range.
pub fn raw(words: &[u16], spec: &RegisterSpec) -> f64 {
    let b = bits(own(words, spec), spec);
    if let Some(bit) = spec.bit {
        return ((b >> bit) & 1) as f64;
    }
    match spec.kind {
        RegType::U16 | RegType::U32 | RegType::U64 => b as f64,
        RegType::I16 => f64::from(b as u16 as i16),
        RegType::I32 => f64::from(b as u32 as i32),
        RegType::I64 => b as i64 as f64,
        RegType::F16 => f64::from(half::f16::from_bits(b as u16).to_f32()),
        RegType::F32 => f64::from(f32::from_bits(b as u32)),
        RegType::F64 => f64::from_bits(b),
    }
}

/// The words that hold the engineering value `value` for `spec`: the inverse of
/// [`decode`] (offset and scale undone, then the type, byte and word order). An integer
/// type takes only a value that lands on a whole raw number within the type's range, a
/// float one a value it can hold; `bit` specs are not written (a bit of a status word would
/// be a read-modify-write).
pub fn encode(value: f64, spec: &RegisterSpec) -> Result<Vec<u16>, String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a finite number"));
    }
    if spec.bit.is_some() {
        return Err("a bit of a register cannot be written on its own".into());
    }
    let raw = (value - spec.offset) / spec.scale;
    let name = crate::names::name_of(&spec.kind);
    let article = if name.starts_with(['i', 'f']) {
        "an"
    } else {
        "a"
    };
    let whole = |min: f64, max: f64| -> Result<f64, String> {
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
                "{value} does not fit {article} {name}: raw {r} is outside {min} to {max}"
            ));
        }
        Ok(r)
    };
    let float = |finite: bool| -> Result<(), String> {
        if finite {
            Ok(())
        } else {
            Err(format!("{value} does not fit {article} {name} (raw {raw})"))
        }
    };
    let b: u64 = match spec.kind {
        RegType::U16 => whole(0.0, 65_535.0)? as u64,
        RegType::I16 => u64::from(whole(-32_768.0, 32_767.0)? as i16 as u16),
        RegType::U32 => whole(0.0, 4_294_967_295.0)? as u64,
        RegType::I32 => u64::from(whole(-2_147_483_648.0, 2_147_483_647.0)? as i32 as u32),
        RegType::U64 => whole(0.0, u64::MAX as f64)? as u64,
        RegType::I64 => whole(i64::MIN as f64, i64::MAX as f64)? as i64 as u64,
        RegType::F16 => {
            let h = half::f16::from_f64(raw);
            float(h.is_finite())?;
            u64::from(h.to_bits())
        }
        RegType::F32 => {
            let f = raw as f32;
            float(f.is_finite())?;
            u64::from(f.to_bits())
        }
        RegType::F64 => raw.to_bits(),
    };
    Ok(words_of(b, spec))
}

/// The inverse of [`bits`]: `b` as the type's registers in the spec's word and byte order.
fn words_of(b: u64, spec: &RegisterSpec) -> Vec<u16> {
    let n = u32::from(spec.kind.width());
    let mut words: Vec<u16> = (0..n)
        .map(|i| (b >> (16 * (n - 1 - i))) as u16)
        .map(|w| match spec.byte_order {
            ByteOrder::Big => w,
            ByteOrder::Little => w.swap_bytes(),
        })
        .collect();
    if spec.word_order == WordOrder::LowFirst {
        words.reverse();
    }
    words
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
            byte_order: ByteOrder::Big,
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

    fn with_bytes(kind: RegType, word_order: WordOrder, byte_order: ByteOrder) -> RegisterSpec {
        RegisterSpec {
            byte_order,
            ..reg(kind, word_order, 1.0, None)
        }
    }

    /// The four registers a device sends for the big-endian bytes `be`, in the layout named
    /// by the keys.
    fn words_in(be: &[u8], word_order: WordOrder, byte_order: ByteOrder) -> Vec<u16> {
        let mut words: Vec<u16> = be
            .chunks(2)
            .map(|p| match byte_order {
                ByteOrder::Big => u16::from_be_bytes([p[0], p[1]]),
                ByteOrder::Little => u16::from_le_bytes([p[0], p[1]]),
            })
            .collect();
        if word_order == WordOrder::LowFirst {
            words.reverse();
        }
        words
    }

    #[test]
    fn every_byte_layout_of_a_32_and_a_64_bit_value_decodes_when_named() {
        for wo in [WordOrder::HighFirst, WordOrder::LowFirst] {
            for bo in [ByteOrder::Big, ByteOrder::Little] {
                let f = words_in(&(-1234.5f32).to_be_bytes(), wo, bo);
                assert_eq!(
                    raw(&f, &with_bytes(RegType::F32, wo, bo)),
                    -1234.5,
                    "{wo:?} {bo:?}"
                );
                let i = words_in(&(-70_000i32).to_be_bytes(), wo, bo);
                assert_eq!(raw(&i, &with_bytes(RegType::I32, wo, bo)), -70_000.0);
                let d = words_in(&(-0.000123f64).to_be_bytes(), wo, bo);
                assert_eq!(raw(&d, &with_bytes(RegType::F64, wo, bo)), -0.000123);
                let u = words_in(&(5_000_000_000u64).to_be_bytes(), wo, bo);
                assert_eq!(raw(&u, &with_bytes(RegType::U64, wo, bo)), 5e9);
                let n = words_in(&(-5_000_000_000i64).to_be_bytes(), wo, bo);
                assert_eq!(raw(&n, &with_bytes(RegType::I64, wo, bo)), -5e9);
            }
        }
    }

    #[test]
    fn half_precision_concentrations_decode_and_their_nan_is_no_data() {
        let spec = reg(RegType::F16, WordOrder::HighFirst, 1.0, None);
        assert_eq!(decode(&[0x5640], &spec), 100.0); // 100 ppm
        assert_eq!(decode(&[0x3E00], &spec), 1.5);
        assert_eq!(decode(&[0xC000], &spec), -2.0);
        assert!(is_no_data(&[0x7E00], &spec));
        assert!(!is_no_data(&[0x5640], &spec));
        let little = with_bytes(RegType::F16, WordOrder::HighFirst, ByteOrder::Little);
        assert_eq!(decode(&[0x4056], &little), 100.0);
    }

    #[test]
    fn the_no_data_patterns_of_64_bit_types_are_all_ones_most_negative_and_nan() {
        let u = reg(RegType::U64, WordOrder::HighFirst, 1.0, None);
        assert!(is_no_data(&[0xFFFF; 4], &u));
        assert!(!is_no_data(&[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], &u));
        let i = reg(RegType::I64, WordOrder::LowFirst, 1.0, None);
        assert!(is_no_data(&[0, 0, 0, 0x8000], &i));
        let nan = f64::NAN.to_bits();
        let words = [
            (nan >> 48) as u16,
            (nan >> 32) as u16,
            (nan >> 16) as u16,
            nan as u16,
        ];
        assert!(is_no_data(
            &words,
            &reg(RegType::F64, WordOrder::HighFirst, 1.0, None)
        ));
    }

    #[test]
    fn a_status_bit_of_a_64_bit_word_is_read_from_the_right_register() {
        let spec = reg(RegType::U64, WordOrder::HighFirst, 1.0, Some(48));
        assert_eq!(decode(&[0x0001, 0, 0, 0], &spec), 1.0);
        assert_eq!(decode(&[0, 0, 0, 0x0001], &spec), 0.0);
    }

    #[test]
    fn encode_is_the_inverse_of_decode_for_every_type_and_layout() {
        for (kind, scale, value) in [
            (RegType::U16, 1.0, 1.0),
            (RegType::U16, 0.1, 23.5),
            (RegType::I16, 0.1, -5.0),
            (RegType::U32, 1.0, 70_000.0),
            (RegType::I32, 1.0, -2.0),
            (RegType::F32, 1.0, 12.5),
            (RegType::F32, 2.0, 12.5),
            (RegType::F16, 1.0, 21.5),
            (RegType::U64, 1.0, 5e9),
            (RegType::I64, 1.0, -5e9),
            (RegType::F64, 1.0, -0.000123),
        ] {
            for wo in [WordOrder::HighFirst, WordOrder::LowFirst] {
                for bo in [ByteOrder::Big, ByteOrder::Little] {
                    let spec = RegisterSpec {
                        byte_order: bo,
                        ..reg(kind, wo, scale, None)
                    };
                    let words = encode(value, &spec).unwrap();
                    assert_eq!(words.len(), usize::from(kind.width()));
                    let back = decode(&words, &spec);
                    assert!(
                        (back - value).abs() < 1e-9,
                        "{kind:?} {wo:?} {bo:?} {value} -> {words:?} -> {back}"
                    );
                }
            }
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
        assert!(encode(-1.0, &u16)
            .unwrap_err()
            .contains("does not fit a u16"));
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
        let f16 = reg(RegType::F16, WordOrder::HighFirst, 1.0, None);
        assert!(encode(70_000.0, &f16)
            .unwrap_err()
            .contains("does not fit an f16"));
        let flag = reg(RegType::U32, WordOrder::HighFirst, 1.0, Some(2));
        assert!(encode(1.0, &flag).is_err());
    }
}
