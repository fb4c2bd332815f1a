//! Bad input never crashes the agent: property-based fuzzing (proptest) of every parser
//! that sees data from outside — MQTT payloads, Modbus register decoding, config text,
//! the replay readers, TSIG secret files. Each property runs CASES random inputs; a crash
//! is a failed test with the shrunk input printed.

use firebreak::config::{load_str, ByteOrder, RegType, RegisterSpec, Table, WordOrder};
use firebreak::sources::modbus::decode::decode;
use firebreak::sources::mqtt::payload;
use proptest::prelude::*;

const CASES: u32 = 2000;

fn contract() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/firebreak.toml"
    ))
    .unwrap()
}

fn reg_type() -> impl Strategy<Value = RegType> {
    prop_oneof![
        Just(RegType::U16),
        Just(RegType::I16),
        Just(RegType::U32),
        Just(RegType::I32),
        Just(RegType::F32)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn any_mqtt_payload_gives_a_value_or_a_reason_never_a_crash(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        pointer in prop::option::of("(/[a-z0-9~]{0,6}){0,3}"),
        ts_pointer in prop::option::of("/[a-z]{0,4}"),
    ) {
        let _ = payload::parse(&bytes, pointer.as_deref(), ts_pointer.as_deref());
    }

    #[test]
    fn a_json_number_at_the_pointer_is_read_exactly(v in -1e9f64..1e9, key in "[a-z]{1,8}") {
        let doc = format!("{{\"{key}\": {v}, \"other\": \"x\"}}");
        let p = payload::parse(doc.as_bytes(), Some(&format!("/{key}")), None).unwrap();
        prop_assert_eq!(p.value, v);
    }

    #[test]
    fn any_register_words_decode_without_a_crash(
        w0 in any::<u16>(), w1 in any::<u16>(), kind in reg_type(),
        low_first in any::<bool>(), scale in -1e3f64..1e3, bit in prop::option::of(0u8..16),
    ) {
        let spec = RegisterSpec {
            table: Table::Holding, address: 0, kind,
            word_order: if low_first { WordOrder::LowFirst } else { WordOrder::HighFirst },
            byte_order: ByteOrder::Big,
            scale, offset: 0.0, bit: if kind == RegType::F32 { None } else { bit },
        };
        let v = decode(&[w0, w1], &spec);
        if spec.bit.is_some() {
            prop_assert!(v == 0.0 || v == 1.0);
        }
    }

    #[test]
    fn a_signed_value_round_trips_through_its_register(v in any::<i16>()) {
        let spec = RegisterSpec {
            table: Table::Input, address: 0, kind: RegType::I16, word_order: WordOrder::HighFirst,
            byte_order: ByteOrder::Big,
            scale: 0.1, offset: 0.0, bit: None,
        };
        let got = decode(&[v as u16], &spec);
        prop_assert!((got - f64::from(v) * 0.1).abs() < 1e-9);
    }

    #[test]
    fn any_config_text_is_refused_or_accepted_never_a_crash(text in "[ -~\n]{0,400}") {
        let _ = load_str(&text, "fuzz.toml", Default::default());
    }

    #[test]
    fn a_damaged_contract_file_names_each_problem_with_a_line_inside_the_file(
        line in 0usize..200, col in 0usize..40, c in "[ -~]",
    ) {
        let text = contract();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let i = line % lines.len();
        let l = &mut lines[i];
        let at = (col.min(l.len())..=l.len()).find(|&p| l.is_char_boundary(p)).unwrap_or(l.len());
        l.insert_str(at, &c);
        let damaged = lines.join("\n");
        let n = lines.len();
        if let Err(e) = load_str(&damaged, "damaged.toml", Default::default()) {
            prop_assert!(!e.errors.is_empty());
            for p in &e.errors {
                prop_assert!(!p.message.is_empty());
                prop_assert!(p.line.is_none_or(|l| l >= 1 && l <= n), "{} outside 1..={}", p, n);
            }
        }
    }

    #[test]
    fn replay_lines_parse_or_fail_with_a_reason(line in "[ -~]{0,120}") {
        let _ = firebreak::replay::parse_csv(&line);
        let _ = firebreak::replay::parse_json(&line);
        let _ = firebreak::replay::parse_ts(&line);
        let _ = firebreak::replay::parse_value(&line);
    }

    #[test]
    fn any_tsig_secret_file_is_read_or_refused(text in "[ -~\n]{0,300}") {
        let _ = firebreak::dns::parse_tsig_secret(&text);
        let _ = firebreak::dns::parse_tsig_key_file(&text);
    }
}

/// Found by reading the replay loop while writing the cargo-fuzz `replay` target (it ticks
/// the detector through every interval between two samples): one mistyped timestamp (a 2
/// for a 1 puts it 30 years ahead) made `firebreak replay` tick through ~9.5 G intervals of
/// 100 ms. A step of more than `MAX_GAP` is now a parse error naming the line.
#[test]
fn a_timestamp_decades_ahead_is_refused_not_replayed_tick_by_tick() {
    use firebreak::replay::{replay_reader, Format, ReplayError};
    let config = load_str(&contract(), "firebreak.toml", Default::default())
        .unwrap()
        .config;
    let id = &config.sensors[0].id;
    let replay = |input: String| {
        replay_reader(
            &config,
            &mut input.as_bytes(),
            "typo.csv",
            Some(Format::Csv),
            false,
            &mut std::io::sink(),
        )
    };
    let typo = format!("1764064800000,{id},21\n2764064800000,{id},22\n");
    let err = replay(typo).unwrap_err();
    assert!(matches!(err, ReplayError::Parse { line: 2, .. }), "{err}");
    assert!(err.to_string().contains("days after the latest"), "{err}");
    // An hour's pause replays.
    let pause = format!("1764064800000,{id},21\n1764068400000,{id},22\n");
    assert_eq!(replay(pause).unwrap().samples, 2);
}

/// Found by the cargo-fuzz `config` target: a syntax error at the very end of a file that
/// ends in a newline (an unclosed array) was reported one line past the file's last line.
#[test]
fn a_syntax_error_at_the_end_of_the_file_names_its_last_line() {
    for text in ["a = [1, 2\n", "x = 1\na = [1,\n  2\n"] {
        let err = load_str(text, "eof.toml", Default::default()).unwrap_err();
        let last = text.lines().count();
        assert_eq!(
            err.errors[0].line,
            Some(last),
            "{text:?}: {}",
            err.errors[0]
        );
    }
}
