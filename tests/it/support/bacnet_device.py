"""A BACnet/IP device played by bacpypes3 (a stack we did not write) for the tests.

Usage: bacnet_device.py SPEC_JSON

SPEC_JSON: {"port": 47900, "instance": 3101, "dir": "/tmp/x",
            "objects": [{"id": "analog-input,3", "presentValue": 0.01, ...}, ...],
            "no_rpm": false, "no_cov": false}

Objects are analog-input (units, covIncrement), multi-state-input (numberOfStates) and
binary-input ("active"/"inactive"). The test changes them at run time through
DIR/control.json: {"analog-input,3": {"presentValue": 0.3}, "binary-input,40":
{"outOfService": true}}; every assignment in it is applied whenever the file changes
(assigning an unchanged value changes nothing). The device reports in DIR/status.json,
every 50 ms: the COV subscriptions it holds per object, and when it last applied the
control file (wall clock, seconds). It prints `ready` once it serves.
"""

import asyncio
import json
import os
import sys
import time

from bacpypes3.argparse import SimpleArgumentParser
from bacpypes3.app import Application
from bacpypes3.errors import ExecutionError, UnrecognizedService
from bacpypes3.local.analog import AnalogInputObject
from bacpypes3.local.binary import BinaryInputObject
from bacpypes3.local.cov import GenericCriteria
from bacpypes3.local.multistate import MultiStateInputObject as _MultiStateInputObject
from bacpypes3.primitivedata import ObjectIdentifier


class MultiStateInputObject(_MultiStateInputObject):
    # bacpypes3 0.0.110 gives multi-state objects the COV-increment criteria, which need a
    # covIncrement they do not have, so it refuses their subscriptions (cov-subscription-
    # failed). BACnet's rule for them (clause 13.1.4) is any change of present-value or
    # status-flags: the generic criteria.
    _cov_criteria = GenericCriteria


def make(obj):
    oid = ObjectIdentifier(obj["id"])
    kind = obj["id"].split(",")[0]
    common = dict(
        objectIdentifier=oid,
        objectName=obj.get("name", obj["id"]),
        statusFlags=[0, 0, 0, 0],
        eventState="normal",
        outOfService=False,
        reliability="noFaultDetected",
    )
    if kind == "analog-input":
        return AnalogInputObject(
            presentValue=obj.get("presentValue", 0.0),
            units=obj.get("units", "percentObscurationPerMeter"),
            covIncrement=obj.get("covIncrement", 0.005),
            **common,
        )
    if kind == "multi-state-input":
        return MultiStateInputObject(
            presentValue=obj.get("presentValue", 1),
            numberOfStates=obj.get("numberOfStates", 3),
            **common,
        )
    if kind == "binary-input":
        return BinaryInputObject(
            presentValue=obj.get("presentValue", "inactive"),
            polarity="normal",
            **common,
        )
    raise SystemExit(f"unknown object type in {obj['id']}")


async def main():
    spec = json.loads(sys.argv[1])
    d = spec["dir"]
    args = SimpleArgumentParser().parse_args(
        [
            "--name",
            spec.get("name", "panel"),
            "--instance",
            str(spec["instance"]),
            "--address",
            f"127.0.0.1/8:{spec['port']}",
        ]
    )
    app = Application.from_args(args)
    objects = {}
    for o in spec["objects"]:
        obj = make(o)
        app.add_object(obj)
        objects[o["id"]] = obj

    if spec.get("no_rpm"):

        async def no_rpm(apdu):
            raise UnrecognizedService()

        app.do_ReadPropertyMultipleRequest = no_rpm

    if spec.get("no_cov"):

        async def no_cov(apdu):
            raise ExecutionError(
                errorClass="services", errorCode="optionalFunctionalityNotSupported"
            )

        app.do_SubscribeCOVRequest = no_cov

    control = os.path.join(d, "control.json")
    status = os.path.join(d, "status.json")
    last = None
    applied_at = None
    print("ready", flush=True)
    while True:
        try:
            with open(control) as f:
                text = f.read()
        except FileNotFoundError:
            text = None
        if text and text != last:
            last = text
            for oid, props in json.loads(text).items():
                obj = objects[oid]
                for name, value in props.items():
                    setattr(obj, name, value)
            applied_at = time.time()
            print(f"applied {text.strip()}", flush=True)
        subs = {}
        for oid, detection in getattr(app, "_cov_detections", {}).items():
            subs[str(oid)] = len(detection.cov_subscriptions)
        tmp = status + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"subscriptions": subs, "applied_at": applied_at}, f)
        os.replace(tmp, status)
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(main())
