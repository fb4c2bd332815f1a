"""A Modbus server we did not write (pymodbus 3.16), for Firebreak's tests.

Usage: python pymodbus_server.py SPEC_JSON
SPEC: {"transport": "tcp", "port": 1502}  or  {"transport": "rtu", "path": "/dev/pts/N"},
      "devices": [{"id": 1, "registers": [{"address": 0, "type": "int16",
                                            "value": -5, "word_order": "big"}, ...]}]
      "type": "packed" packs with Python's struct ("format": ">e", ">f", ">d", ...) and
      takes "byte_order" and "word_order" ("big" or "little").
Values are encoded by pymodbus's own convert_to_registers, so the agent's decoder is checked
against an encoder it does not share. Prints "ready" on stdout once serving.

A device with "coils" and/or "discrete" (lists of booleans from address 0) gets four
separate tables instead of one shared block: holding and input registers both hold
"registers", coils and discrete inputs their own bits (padded to a multiple of 16).
"mirror": [[coil, discrete], ...] makes a discrete input follow writes to a coil, as a
BMS's "charging" state follows its charge-enable coil. Every write request is printed on
stdout: "write fc=5 address=12 values=[False]".
"""

import asyncio
import json
import struct
import sys

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.exceptions import NoSuchIdException
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator import simcore

# pymodbus 3.16.1's SimCore looks up an unknown unit id as id 0 and fails with KeyError,
# which the server answers with exception 4 even when told to ignore missing devices.
# Raise the exception its request handler expects instead, so that unknown ids are silent.
_get_device = simcore.SimCore._SimCore__get_device


def _get_device_or_none(self, device_id):
    if device_id not in self.devices and 0 not in self.devices:
        raise NoSuchIdException(f"no device {device_id}")
    return _get_device(self, device_id)


simcore.SimCore._SimCore__get_device = _get_device_or_none

TYPES = {
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
    "int64": ModbusClientMixin.DATATYPE.INT64,
    "uint64": ModbusClientMixin.DATATYPE.UINT64,
    "float64": ModbusClientMixin.DATATYPE.FLOAT64,
}


def packed(reg):
    """Python's own struct packing (format ">e" is IEEE half precision), then the layout a
    gateway may use: bytes swapped inside each register, registers low word first."""
    data = struct.pack(reg["format"], reg["value"])
    if reg.get("byte_order") == "little":
        data = b"".join(data[i : i + 2][::-1] for i in range(0, len(data), 2))
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if reg.get("word_order") == "little":
        regs.reverse()
    return regs


def words(reg):
    if reg["type"] == "raw":
        return list(reg["value"])
    if reg["type"] == "packed":
        return packed(reg)
    return ModbusClientMixin.convert_to_registers(
        reg["value"], TYPES[reg["type"]], word_order=reg.get("word_order", "big")
    )


def bits(values):
    values = [bool(v) for v in values] or [False]
    values += [False] * (-len(values) % 16)
    return [SimData(address=0, values=values, datatype=DataType.BITS)]


SERVER = {}


def action_for(dev):
    mirror = {c: d for c, d in dev.get("mirror", [])}

    async def action(function_code, _start, address, count, _registers, values):
        if values is None or function_code not in (5, 6, 15, 16):
            return None
        print(f"write fc={function_code} address={address} values={list(values)}", flush=True)
        if function_code in (5, 15):
            for k, v in enumerate(values[:count]):
                if address + k in mirror:
                    await SERVER["server"].context.async_setValues(
                        dev["id"], 2, mirror[address + k], [bool(v)]
                    )
        return None

    return action


async def main(spec):
    devices = []
    for dev in spec["devices"]:
        blocks = [
            SimData(address=r["address"], values=words(r), datatype=DataType.REGISTERS)
            for r in dev["registers"]
        ]
        if "coils" in dev or "discrete" in dev:
            inputs = [
                SimData(address=r["address"], values=words(r), datatype=DataType.REGISTERS)
                for r in dev["registers"]
            ]
            tables = (bits(dev.get("coils", [])), bits(dev.get("discrete", [])), blocks, inputs)
            devices.append(SimDevice(id=dev["id"], simdata=tables, action=action_for(dev)))
        else:
            devices.append(SimDevice(id=dev["id"], simdata=blocks, action=action_for(dev)))
    if spec["transport"] == "tcp":
        server = ModbusTcpServer(devices, address=("127.0.0.1", spec["port"]))
    else:
        # A unit id nobody serves gets no answer at all, as on a real RS-485 line.
        server = ModbusSerialServer(
            devices, port=spec["path"], baudrate=19200, parity="N", ignore_missing_devices=True
        )
    SERVER["server"] = server
    task = asyncio.create_task(server.serve_forever())
    await asyncio.sleep(0.2)
    print("ready", flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
