//! Modbus register decoding: any words under any spec the config validation accepts
//! (finite scale other than 0, finite offset, a bit inside the type's width and not with
//! f32) decode without a crash; a bit gives 0 or 1; an integer type gives exactly
//! `raw * scale + offset` (checked against a second, byte-wise decoding) and never NaN; a
//! finite f32 with a realistic scale and offset gives a finite value.
//!
//! Input layout: word0 word1 (u16 BE), kind, flags (bit 0: low word first, bit 1: a bit
//! is set), bit, scale (f64 LE, default 1), offset (f64 LE, default 0).
#![no_main]

use firebreak::config::{ByteOrder, RegType, RegisterSpec, Table, WordOrder};
use firebreak::sources::modbus::decode::{decode, is_no_data};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Input {
    words: [u16; 2],
    kind: u8,
    low_first: bool,
    scale: f64,
    offset: f64,
    bit: Option<u8>,
}

impl Input {
    fn from_bytes(d: &[u8]) -> Input {
        let at = |i: usize| d.get(i).copied().unwrap_or(0);
        let f64_at = |i: usize, default: f64| {
            d.get(i..i + 8)
                .map_or(default, |b| f64::from_le_bytes(b.try_into().unwrap()))
        };
        Input {
            words: [
                u16::from_be_bytes([at(0), at(1)]),
                u16::from_be_bytes([at(2), at(3)]),
            ],
            kind: at(4),
            low_first: at(5) & 1 == 1,
            bit: (at(5) & 2 == 2).then_some(at(6)),
            scale: f64_at(7, 1.0),
            offset: f64_at(15, 0.0),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let input = Input::from_bytes(data);
    let kind = match input.kind % 5 {
        0 => RegType::U16,
        1 => RegType::I16,
        2 => RegType::U32,
        3 => RegType::I32,
        _ => RegType::F32,
    };
    // Only specs the validation accepts (src/config/validate.rs).
    if !input.scale.is_finite() || input.scale == 0.0 || !input.offset.is_finite() {
        return;
    }
    let bit = match input.bit {
        Some(b) if kind == RegType::F32 || u16::from(b) >= kind.width() * 16 => return,
        b => b,
    };
    let (scale, offset) = if bit.is_some() {
        (1.0, 0.0)
    } else {
        (input.scale, input.offset)
    };
    let spec = RegisterSpec {
        table: Table::Holding,
        address: 0,
        kind,
        word_order: if input.low_first {
            WordOrder::LowFirst
        } else {
            WordOrder::HighFirst
        },
        byte_order: ByteOrder::Big,
        scale,
        offset,
        bit,
    };
    let words = &input.words[..usize::from(kind.width())];
    let no_data = is_no_data(words, &spec);
    let v = decode(words, &spec);

    // The same value, decoded another way: the words as big-endian bytes.
    let [a, b] = input.words;
    let (hi, lo) = if input.low_first { (b, a) } else { (a, b) };
    let be32 = [hi.to_be_bytes(), lo.to_be_bytes()].concat();
    let u32v = u32::from_be_bytes(be32.try_into().unwrap());
    if let Some(bit) = bit {
        assert!(v == 0.0 || v == 1.0, "bit {bit} gave {v}");
        let bits = if kind.width() == 1 {
            u32::from(a)
        } else {
            u32v
        };
        assert_eq!(v, f64::from((bits >> bit) & 1));
        return;
    }
    let raw = match kind {
        RegType::U16 => f64::from(a),
        RegType::I16 => f64::from(i16::from_be_bytes(a.to_be_bytes())),
        RegType::U32 => f64::from(u32v),
        RegType::I32 => f64::from(i32::from_be_bytes(u32v.to_be_bytes())),
        RegType::F32 => f64::from(f32::from_be_bytes(u32v.to_be_bytes())),
    };
    let want = raw * scale + offset;
    assert!(
        v.to_bits() == want.to_bits() || (v.is_nan() && want.is_nan()),
        "{input:?}: decoded {v}, expected {want}"
    );
    if kind != RegType::F32 {
        assert!(!v.is_nan(), "{input:?} gave NaN");
    }
    let realistic = scale.abs() <= 1e6 && offset.abs() <= 1e9;
    if realistic && raw.is_finite() {
        assert!(v.is_finite(), "{input:?} gave {v}");
    }
    if kind == RegType::F32 {
        assert_eq!(
            no_data,
            raw.is_nan(),
            "{input:?}: NaN words are the no-data pattern"
        );
    }
});
