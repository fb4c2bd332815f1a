//! MQTT payloads: any bytes, with or without a JSON pointer and a timestamp pointer, give a
//! reading or a reason, never a crash; a reading is a finite number (a sensor cannot
//! publish infinity or NaN as a value).
//!
//! Input layout (easy to write seeds for): `payload`, or `pointer 0xFF payload`, or
//! `pointer 0xFF ts_pointer 0xFF payload` (0xFF never occurs in UTF-8 text).
#![no_main]

use firebreak::sources::mqtt::payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.splitn(3, |&b| b == 0xff).collect();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (pointer, ts_pointer, bytes) = match parts.as_slice() {
        [p] => (None, None, *p),
        [ptr, p] => (Some(text(ptr)), None, *p),
        [ptr, ts, p] => (Some(text(ptr)), Some(text(ts)), *p),
        _ => unreachable!("splitn(3) gives one to three parts"),
    };
    match payload::parse(bytes, pointer.as_deref(), ts_pointer.as_deref()) {
        Ok(p) => {
            assert!(p.value.is_finite(), "reading {} from {data:?}", p.value);
            assert_eq!(p.timestamp_ms.is_some(), ts_pointer.is_some());
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            let _ = e.fault();
        }
    }
});
