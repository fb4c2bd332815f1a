#!/usr/bin/env python3
"""net-snmp `pass_persist` handler serving UPS-MIB (RFC 1628) values from a file.

The file (first argument) has one `OID TYPE VALUE` line per object, e.g.
`.1.3.6.1.2.1.33.1.4.1.0 integer 3`; it is read again on every request, so a test can
change values at any time (written to a temporary name and renamed, so never half read).
Protocol (snmpd's pass_persist): `PING` -> `PONG`; `get`/`getnext` then an OID line ->
three lines (OID, type, value) or `NONE`; `set` -> `not-writable`.
"""
import sys

VALUES_FILE = sys.argv[1]


def key(oid):
    return tuple(int(a) for a in oid.strip(".").split(".") if a)


def values():
    out = {}
    try:
        with open(VALUES_FILE) as f:
            for line in f:
                parts = line.split(None, 2)
                if len(parts) == 3:
                    out["." + parts[0].strip(".")] = (parts[1], parts[2].rstrip("\n"))
    except FileNotFoundError:
        pass
    return out


def reply(*lines):
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = line.strip()
    if cmd == "PING":
        reply("PONG")
    elif cmd in ("get", "getnext"):
        oid = "." + sys.stdin.readline().strip().strip(".")
        v = values()
        if cmd == "get":
            found = oid if oid in v else None
        else:
            later = sorted((o for o in v if key(o) > key(oid)), key=key)
            found = later[0] if later else None
        if found is None:
            reply("NONE")
        else:
            reply(found, v[found][0], v[found][1])
    elif cmd == "set":
        sys.stdin.readline()
        sys.stdin.readline()
        reply("not-writable")
    elif cmd == "":
        continue
    else:
        reply("NONE")
