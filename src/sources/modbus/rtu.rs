//! Modbus RTU over a serial line (tokio-serial). One open port per link, shared by every
//! unit id on that line (see [`super::Link`]).

use super::ModbusError;
use crate::config::Parity;
use tokio_modbus::client::Context;
use tokio_modbus::Slave;

pub fn open(
    path: &str,
    baud: u32,
    parity: Parity,
    stop_bits: u8,
    data_bits: u8,
    unit: u8,
) -> Result<Context, ModbusError> {
    let builder = tokio_serial::new(path, baud)
        .parity(match parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(if stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        })
        .data_bits(if data_bits == 7 {
            tokio_serial::DataBits::Seven
        } else {
            tokio_serial::DataBits::Eight
        });
    let port = tokio_serial::SerialStream::open(&builder).map_err(|e| ModbusError::Serial {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    Ok(tokio_modbus::client::rtu::attach_slave(port, Slave(unit)))
}
