//! `firebreak probe`: commissioning help. Reads registers once and prints every plausible
//! decoding, lists a BACnet device's objects, or prints what arrives on an MQTT topic and
//! what a `json_pointer` extracts, so
//! a technician can pick the right config before writing it. Read-only: no write function
//! code is ever sent.

use crate::config::{ByteOrder, MqttSource, RegType, RegisterSpec, Table, WordOrder};
use crate::sources::modbus;
use crate::sources::modbus::config::parse_modbus_url;
use crate::sources::modbus::decode;
use crate::sources::mqtt::{self, payload};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Modbus(#[from] modbus::ModbusError),
    #[error("read failed: {0}")]
    Transport(String),
    #[error("the device answered with exception {0}")]
    Exception(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Mqtt(#[from] mqtt::MqttError),
    #[error("MQTT: {0}")]
    MqttConnection(String),
    #[error("BACnet: {0}")]
    Bacnet(#[from] crate::sources::bacnet::client::BacnetError),
}

pub struct ModbusProbe {
    pub url: String,
    pub unit: u8,
    pub table: Table,
    pub address: u16,
    pub count: u16,
    pub scale: f64,
    pub timeout: Duration,
}

/// Reads the registers once and returns the report.
pub async fn modbus(p: &ModbusProbe) -> Result<String, ProbeError> {
    let link = parse_modbus_url(&p.url).map_err(ProbeError::Usage)?;
    let max = p.table.protocol_max_per_read();
    if p.count == 0 || p.count > max || u32::from(p.address) + u32::from(p.count) > 65536 {
        return Err(ProbeError::Usage(format!(
            "--count must be 1 to {max} for table {} and address + count at most 65536",
            p.table.as_str()
        )));
    }
    let mut ctx = modbus::connect(&link, p.unit, p.timeout).await?;
    let read = modbus::read_table(&mut ctx, p.table, p.address, p.count);
    let words = match tokio::time::timeout(p.timeout, read).await {
        Err(_) => return Err(ProbeError::Timeout(p.timeout)),
        Ok(Err(e)) => return Err(ProbeError::Transport(e.to_string())),
        Ok(Ok(Err(exception))) => return Err(ProbeError::Exception(format!("{exception:?}"))),
        Ok(Ok(Ok(words))) => words,
    };
    let (what, body) = if p.table.is_bits() {
        ("bits", format_bits(p.address, &words))
    } else {
        ("registers", format_registers(p.address, &words, p.scale))
    };
    Ok(format!(
        "{} unit {} {} {what} {}..{}\n{body}",
        p.url,
        p.unit,
        p.table.as_str(),
        p.address,
        u32::from(p.address) + u32::from(p.count) - 1,
    ))
}

/// One line per coil or discrete input: its address and 0/1, with the addresses that are
/// set summarised first so a technician finds the "on battery" contact at a glance.
pub fn format_bits(start: u16, bits: &[u16]) -> String {
    let set: Vec<String> = bits
        .iter()
        .enumerate()
        .filter(|(_, &b)| b != 0)
        .map(|(i, _)| (u32::from(start) + i as u32).to_string())
        .collect();
    let mut out = format!(
        "set (1): {}\n{:>7}  value\n",
        if set.is_empty() {
            "none".to_string()
        } else {
            set.join(",")
        },
        "address"
    );
    for (i, b) in bits.iter().enumerate() {
        let _ = writeln!(out, "{:>7}  {b}", u32::from(start) + i as u32);
    }
    out
}

fn num(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Every plausible decoding of `words` read from `start`: per register u16, i16, f16 and
/// bits; per pair of registers u32, i32 and f32, per four u64, i64 and f64, each in the
/// four byte layouts `word_order` and `byte_order` can name; all with `scale` applied and
/// decoded by the agent's own decoder. "No data" patterns are marked.
pub fn format_registers(start: u16, words: &[u16], scale: f64) -> String {
    let mut out = String::new();
    let scaled = scale != 1.0;
    let _ = writeln!(
        out,
        "{:>7}  {:>6}  {:>8}  {:>8}  {:>12}{}  bits set",
        "address",
        "hex",
        "u16",
        "i16",
        "f16",
        if scaled {
            format!(
                "  {:>12}  {:>12}",
                format!("u16 x{}", num(scale)),
                format!("i16 x{}", num(scale))
            )
        } else {
            String::new()
        }
    );
    let f16 = layout(RegType::F16, WordOrder::HighFirst, ByteOrder::Big);
    for (i, &w) in words.iter().enumerate() {
        let bits: Vec<String> = (0..16)
            .filter(|b| w >> b & 1 == 1)
            .map(|b| b.to_string())
            .collect();
        let mut line = format!(
            "{:>7}  0x{:04X}  {:>8}  {:>8}  {:>12}",
            u32::from(start) + i as u32,
            w,
            w,
            w as i16,
            num(decode::raw(&[w], &f16))
        );
        if scaled {
            let _ = write!(
                line,
                "  {:>12}  {:>12}",
                num(f64::from(w) * scale),
                num(f64::from(w as i16) * scale)
            );
        }
        let _ = write!(
            line,
            "  {}",
            if bits.is_empty() {
                "-".into()
            } else {
                bits.join(",")
            }
        );
        match w {
            0xFFFF => line.push_str("  (0xFFFF: \"no data\" for u16)"),
            0x8000 => line.push_str("  (0x8000: \"no data\" for i16)"),
            _ => {}
        }
        out.push_str(&line);
        out.push('\n');
    }
    for (width, types) in [
        (2usize, [RegType::U32, RegType::I32, RegType::F32]),
        (4, [RegType::U64, RegType::I64, RegType::F64]),
    ] {
        if words.len() < width {
            continue;
        }
        let names = types.map(|t| crate::names::name_of(&t));
        let _ = writeln!(out, "\n{}-bit values (scale {}):", width * 16, num(scale));
        let _ = writeln!(
            out,
            "{:>7}  {:<28}  {:>22}  {:>22}  {:>22}",
            "address", "layout", names[0], names[1], names[2]
        );
        for i in 0..=words.len() - width {
            let w = &words[i..i + width];
            for (name, wo, bo) in LAYOUTS {
                let v = types.map(|t| num(decode::raw(w, &layout(t, wo, bo)) * scale));
                let _ = writeln!(
                    out,
                    "{:>7}  {:<28}  {:>22}  {:>22}  {:>22}",
                    u32::from(start) + i as u32,
                    name,
                    v[0],
                    v[1],
                    v[2]
                );
            }
        }
    }
    if words.len() >= 2 {
        let _ = writeln!(
            out,
            "\nlayout: the bytes from the first register on (A = the value's most significant \
             byte); write the sensor with the word_order and byte_order shown."
        );
    }
    out
}

/// The four byte layouts of a multi-register value and the keys that name them.
const LAYOUTS: [(&str, WordOrder, ByteOrder); 4] = [
    ("ABCD high_first big", WordOrder::HighFirst, ByteOrder::Big),
    ("CDAB low_first big", WordOrder::LowFirst, ByteOrder::Big),
    (
        "BADC high_first little",
        WordOrder::HighFirst,
        ByteOrder::Little,
    ),
    (
        "DCBA low_first little",
        WordOrder::LowFirst,
        ByteOrder::Little,
    ),
];

fn layout(kind: RegType, word_order: WordOrder, byte_order: ByteOrder) -> RegisterSpec {
    RegisterSpec {
        table: Table::Holding,
        address: 0,
        kind,
        word_order,
        byte_order,
        scale: 1.0,
        offset: 0.0,
        bit: None,
    }
}

pub struct MqttProbe {
    pub url: String,
    pub topic: String,
    pub json_pointer: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Stop after this many messages (0: until `duration` or Ctrl-C).
    pub count: usize,
    pub duration: Option<Duration>,
}

/// Describes one message: what arrived and what the pointer extracts.
pub fn describe_message(topic: &str, data: &[u8], json_pointer: Option<&str>) -> String {
    let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).replace('\n', " ");
    let more = if data.len() > 200 { "..." } else { "" };
    let result = match payload::parse(data, json_pointer, None) {
        Ok(p) => format!("value {}", num(p.value)),
        Err(e) => format!("{} ({e})", e.fault().as_str()),
    };
    let ptr = json_pointer
        .map(|p| format!(" json_pointer {p}:"))
        .unwrap_or_default();
    let mut out = format!(
        "{topic} ({} bytes): {shown}{more}\n ->{ptr} {result}\n",
        data.len()
    );
    if json_pointer.is_none() {
        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
            let mut found = Vec::new();
            numeric_pointers(&doc, String::new(), &mut found);
            if !found.is_empty() && !doc.is_number() {
                out.push_str(" -> numbers in this document (json_pointer = ...):\n");
                for (p, v) in found.iter().take(20) {
                    let _ = writeln!(out, "      {p} = {v}");
                }
            }
        }
    }
    out
}

fn numeric_pointers(v: &serde_json::Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Number(n) => out.push((at, n.to_string())),
        serde_json::Value::Bool(b) => out.push((at, b.to_string())),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let k = k.replace('~', "~0").replace('/', "~1");
                numeric_pointers(v, format!("{at}/{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                numeric_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Subscribes and prints messages to stdout as they arrive.
pub async fn mqtt(p: &MqttProbe) -> Result<(), ProbeError> {
    let (host, port, tls) =
        crate::sources::mqtt::config::parse_mqtt_url(&p.url).map_err(ProbeError::Usage)?;
    crate::mqtt_topic::check_filter(&p.topic).map_err(ProbeError::Usage)?;
    let cfg = MqttSource {
        host,
        port,
        tls,
        client_id: format!("firebreak-probe-{}", std::process::id()),
        username: p.username.clone(),
        password_file: p.password_file.clone(),
        ca_file: p.ca_file.clone(),
        cert_file: None,
        key_file: None,
        keep_alive: Duration::from_secs(15),
        timeout: Duration::from_secs(5),
        reconnect_max: Duration::from_secs(5),
        subscribe: vec![],
    };
    let opts = mqtt::options("probe", &cfg)?;
    let (client, mut events) = rumqttc::AsyncClient::new(opts, 8);
    let mut seen = 0usize;
    let work = async {
        loop {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                    client
                        .subscribe(p.topic.clone(), rumqttc::QoS::AtLeastOnce)
                        .await
                        .map_err(|e| ProbeError::MqttConnection(e.to_string()))?;
                    eprintln!(
                        "connected to {}; waiting for messages on {}",
                        p.url, p.topic
                    );
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(m))) => {
                    let text = describe_message(&m.topic, &m.payload, p.json_pointer.as_deref());
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                    seen += 1;
                    if p.count > 0 && seen >= p.count {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(ProbeError::MqttConnection(e.to_string())),
            }
        }
    };
    match p.duration {
        Some(d) => match tokio::time::timeout(d, work).await {
            Ok(r) => r,
            Err(_) => Ok(()),
        },
        None => work.await,
    }
}

pub struct BacnetProbe {
    /// `bacnet://host[:port]`
    pub url: String,
    /// The Device object's instance.
    pub device: u32,
    pub timeout: Duration,
}

/// A few engineering units by number (BACnetEngineeringUnits), for the listing.
fn units_name(u: u32) -> String {
    match u {
        3 => "amperes".into(),
        5 => "volts".into(),
        47 => "watts".into(),
        48 => "kilowatts".into(),
        62 => "degrees-celsius".into(),
        64 => "degrees-fahrenheit".into(),
        72 => "minutes".into(),
        73 => "seconds".into(),
        95 => "no-units".into(),
        96 => "parts-per-million".into(),
        98 => "percent".into(),
        144 => "percent-obscuration-per-meter".into(),
        other => format!("units {other}"),
    }
}

/// Lists the device's objects (object-list), each with its name, present value, units and
/// status, and the sensor keys that read it.
pub async fn bacnet(p: &BacnetProbe) -> Result<String, ProbeError> {
    use crate::sources::bacnet::client::{BacnetError, Client};
    use crate::sources::bacnet::codec::{self, object_type, prop, ObjectId, StatusFlags, Value};
    let (host, port) =
        crate::sources::bacnet::config::parse_bacnet_url(&p.url).map_err(ProbeError::Usage)?;
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut client = Client::connect(&target, None, None, p.timeout, 1).await?;
    let device = ObjectId::new(object_type::DEVICE, p.device);
    // The whole list in one answer when it fits unsegmented; else one element at a time.
    let objects: Vec<ObjectId> =
        match client.read_property(device, prop::OBJECT_LIST, None).await {
            Ok(values) => values,
            Err(BacnetError::Abort(_) | BacnetError::Reject(_)) => {
                let count = client
                    .read_property(device, prop::OBJECT_LIST, Some(0))
                    .await?
                    .first()
                    .and_then(Value::number)
                    .unwrap_or(0.0) as u32;
                let mut out = Vec::new();
                for i in 1..=count {
                    out.extend(
                        client
                            .read_property(device, prop::OBJECT_LIST, Some(i))
                            .await?,
                    );
                }
                out
            }
            Err(BacnetError::Error(e)) if e.is_unknown() => {
                return Err(ProbeError::Usage(format!(
                    "the device at {target} has no Device object {} ({e}): check --device",
                    p.device
                )))
            }
            Err(e) => return Err(e.into()),
        }
        .into_iter()
        .filter_map(|v| match v {
            Value::ObjectId(o) => Some(o),
            _ => None,
        })
        .collect();
    let specs: Vec<(ObjectId, Vec<u32>)> = objects
        .iter()
        .map(|o| {
            let props = if *o == device {
                vec![prop::OBJECT_NAME, prop::VENDOR_NAME, prop::MODEL_NAME]
            } else {
                vec![
                    prop::OBJECT_NAME,
                    prop::PRESENT_VALUE,
                    prop::UNITS,
                    prop::STATUS_FLAGS,
                    prop::RELIABILITY,
                ]
            };
            (*o, props)
        })
        .collect();
    let results = client.read_objects(&specs).await?;
    let mut out = String::new();
    let text = |r: &codec::AccessResult, p: u32| -> Option<Value> {
        r.results
            .iter()
            .find(|x| x.property == p)
            .and_then(|x| x.value.as_ref().ok())
            .and_then(|v| v.first().cloned())
    };
    let plain = |v: Option<Value>| match v {
        Some(Value::CharacterString(s)) => s,
        Some(v) => v.to_string(),
        None => String::new(),
    };
    if let Some(d) = results.iter().find(|r| r.object == device) {
        let _ = writeln!(
            out,
            "device {} {:?} at {target}: {} {}, {} object(s)",
            p.device,
            plain(text(d, prop::OBJECT_NAME)),
            plain(text(d, prop::VENDOR_NAME)),
            plain(text(d, prop::MODEL_NAME)),
            objects.len()
        );
    }
    let _ = writeln!(
        out,
        "{:<26} {:<28} {:<16} {:<30} status",
        "object", "name", "present-value", "units"
    );
    let mut readable = Vec::new();
    for r in results.iter().filter(|r| r.object != device) {
        let name = plain(text(r, prop::OBJECT_NAME));
        let pv = text(r, prop::PRESENT_VALUE);
        let shown = match (&pv, r.object.kind) {
            (Some(Value::Enumerated(e)), 3..=5) => {
                format!("{e} ({})", if *e == 1 { "active" } else { "inactive" })
            }
            (Some(v), _) => v.to_string(),
            (None, _) => "-".into(),
        };
        let units = match text(r, prop::UNITS) {
            Some(Value::Enumerated(u)) => units_name(u),
            _ => "-".into(),
        };
        let mut status = text(r, prop::STATUS_FLAGS)
            .as_ref()
            .and_then(StatusFlags::from_value)
            .map_or_else(|| "-".to_string(), |f| f.to_string());
        if let Some(Value::Enumerated(rel)) = text(r, prop::RELIABILITY) {
            if rel != 0 {
                status.push_str(&format!(", reliability {rel}"));
            }
        }
        if pv.as_ref().and_then(Value::number).is_some() {
            readable.push(r.object);
        }
        let _ = writeln!(
            out,
            "{:<26} {:<28} {:<16} {:<30} {status}",
            r.object.to_string(),
            format!("{name:?}"),
            shown,
            units
        );
    }
    if let Some(first) = readable.first() {
        let _ = writeln!(
            out,
            "\nA sensor on one of these: object = \"{first}\" (binary: 1 active, 0 inactive; multi-state: the state number, `equals = N` for 0/1)"
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decoding_of_a_register_block_is_listed() {
        let out = format_registers(0, &[0xFFCE, 0x0001, 0x1170], 0.1);
        assert!(out.contains("0xFFCE"), "{out}");
        assert!(out.contains("-5"), "i16 x0.1 of 0xFFCE:\n{out}");
        assert!(
            out.contains("7000"),
            "u32 high_first of [1, 0x1170] x0.1:\n{out}"
        );
        let f = 23.5f32.to_bits();
        let out = format_registers(10, &[(f >> 16) as u16, f as u16, 0xFFFF], 1.0);
        assert!(out.contains("23.5"), "{out}");
        assert!(out.contains("no data"), "{out}");
    }

    #[test]
    fn the_new_decodings_are_listed_with_the_keys_that_name_them() {
        // 23.5 as f32 in the layout DCBA (low word first, bytes swapped).
        let f = 23.5f32.to_bits();
        let words = [(f as u16).swap_bytes(), ((f >> 16) as u16).swap_bytes()];
        let out = format_registers(0, &words, 1.0);
        let row = out
            .lines()
            .find(|l| l.contains("DCBA low_first little"))
            .expect("a DCBA row");
        assert!(row.contains("23.5"), "{out}");
        // 1.5 as f16 (0x3E00) in one register.
        assert!(format_registers(0, &[0x3E00], 1.0).contains("1.5"));
        // -2 as i64 in four registers, high word first.
        let out = format_registers(0, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], 1.0);
        let (_, wide) = out.split_once("64-bit values").expect("a 64-bit table");
        let row = wide
            .lines()
            .find(|l| l.contains("ABCD high_first big"))
            .expect("an ABCD row");
        assert!(row.contains("-2"), "{out}");
    }

    #[test]
    fn an_mqtt_message_shows_what_the_pointer_extracts_or_why_not() {
        let out = describe_message("a/b", br#"{"obscuration": 0.05, "x": {"t": 21}}"#, None);
        assert!(out.contains("/obscuration = 0.05"), "{out}");
        assert!(out.contains("/x/t = 21"), "{out}");
        let out = describe_message("a/b", br#"{"obscuration": 0.05}"#, Some("/obscuration"));
        assert!(out.contains("value 0.05"), "{out}");
        let out = describe_message("a/b", b"hot", None);
        assert!(out.contains("fault:bad_payload"), "{out}");
    }
}
