//! `firebreak probe`: commissioning help. Reads registers once and prints every plausible
//! decoding, or prints what arrives on an MQTT topic and what a `json_pointer` extracts, so
//! a technician can pick the right config before writing it. Read-only: no write function
//! code is ever sent.

use crate::config::{MqttSource, Table};
use crate::sources::modbus;
use crate::sources::modbus::config::parse_modbus_url;
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

/// Every plausible decoding of `words` read from `start`: per register u16, i16 and bits;
/// per pair of registers u32, i32 and f32 in both word orders; all with `scale` applied.
/// "No data" patterns are marked.
pub fn format_registers(start: u16, words: &[u16], scale: f64) -> String {
    let mut out = String::new();
    let scaled = scale != 1.0;
    let _ = writeln!(
        out,
        "{:>7}  {:>6}  {:>8}  {:>8}{}  bits set",
        "address",
        "hex",
        "u16",
        "i16",
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
    for (i, &w) in words.iter().enumerate() {
        let bits: Vec<String> = (0..16)
            .filter(|b| w >> b & 1 == 1)
            .map(|b| b.to_string())
            .collect();
        let mut line = format!(
            "{:>7}  0x{:04X}  {:>8}  {:>8}",
            u32::from(start) + i as u32,
            w,
            w,
            w as i16
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
    if words.len() >= 2 {
        let _ = writeln!(out, "\n32-bit values (scale {}):", num(scale));
        let _ = writeln!(
            out,
            "{:>7}  {:>12}  {:>12}  {:>14}  {:>12}  {:>12}  {:>14}",
            "address", "u32 high", "i32 high", "f32 high", "u32 low", "i32 low", "f32 low"
        );
        for i in 0..words.len() - 1 {
            let hi = (u32::from(words[i]) << 16) | u32::from(words[i + 1]);
            let lo = (u32::from(words[i + 1]) << 16) | u32::from(words[i]);
            let f = |x: u32| f64::from(f32::from_bits(x)) * scale;
            let _ = writeln!(
                out,
                "{:>7}  {:>12}  {:>12}  {:>14}  {:>12}  {:>12}  {:>14}",
                u32::from(start) + i as u32,
                num(f64::from(hi) * scale),
                num(f64::from(hi as i32) * scale),
                num(f(hi)),
                num(f64::from(lo) * scale),
                num(f64::from(lo as i32) * scale),
                num(f(lo)),
            );
        }
        let _ = writeln!(
            out,
            "\"high\" = word_order = \"high_first\" (register n holds the high word), \"low\" = \"low_first\"."
        );
    }
    out
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
