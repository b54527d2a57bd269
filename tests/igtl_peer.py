#!/usr/bin/env python3
"""An independent OpenIGTLink peer for tests/tracking.rs, built on pyigtl.

It plays a PLUS Server (a pyigtl server that sonoguide connects to with
`--tracking igtl://...`, sending ProbeToReference / NeedleToReference
TRANSFORMs by phases) and a 3D Slicer (a pyigtl client of sonoguide's
`--serve-port`), and keeps every IMAGE and TRANSFORM sonoguide sends on
either connection.

    igtl_peer.py PLAN.json OUT_DIR

PLAN: {"tracking_port": P, "image_port": Q, "rate": 20, "start_timeout": 120,
       "collect_after": 3, "phases": [{"name": "a", "duration": 4,
       "send": {"NeedleToReference": 4x4 row-major mm, ...}}, ...]}

OUT_DIR/result.json lists the phases (wall-clock start and end) and the
received messages; the pixels of each IMAGE go to OUT_DIR/<source>_<n>.raw.
Prints `READY` once sonoguide is connected and sending images.
"""

import json
import os
import sys
import time

import numpy as np
import pyigtl


def main():
    plan = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    server = pyigtl.OpenIGTLinkServer(port=plan["tracking_port"], local_server=True)
    client = pyigtl.OpenIGTLinkClient(host="127.0.0.1", port=plan["image_port"])
    received = []
    counts = {"server": 0, "client": 0}

    def poll():
        for source, peer in (("server", server), ("client", client)):
            for m in peer.get_latest_messages():
                entry = {"source": source, "type": m.message_type, "device": m.device_name,
                         "timestamp": m.timestamp, "metadata": dict(m.metadata), "received": time.time()}
                if m.message_type == "IMAGE":
                    img = np.ascontiguousarray(m.image)
                    entry["shape"] = list(img.shape)
                    entry["dtype"] = str(img.dtype)
                    entry["matrix"] = np.asarray(m.ijk_to_world_matrix, dtype=float).tolist()
                    name = "%s_%d.raw" % (source, counts[source])
                    counts[source] += 1
                    img.tofile(os.path.join(out, name))
                    entry["file"] = name
                elif m.message_type == "TRANSFORM":
                    entry["matrix"] = np.asarray(m.matrix, dtype=float).tolist()
                received.append(entry)

    def send(devices):
        for name, matrix in devices.items():
            msg = pyigtl.TransformMessage(np.array(matrix, dtype=np.float32), device_name=name, timestamp=time.time())
            # OpenIGTLink 3 header, so that sonoguide answers in kind
            # (with metadata such as FrameIndex).
            msg.header_version = 2
            server.send_message(msg, wait=False)

    # Wait for sonoguide: its client on our server, and images on ours.
    deadline = time.time() + plan.get("start_timeout", 120)
    first = plan["phases"][0]["send"] if plan["phases"] else {}
    while time.time() < deadline:
        if server.is_connected():
            send(first)
        poll()
        if server.is_connected() and any(r["type"] == "IMAGE" for r in received):
            break
        time.sleep(1.0 / plan.get("rate", 20))
    else:
        json.dump({"error": "sonoguide did not connect and send an IMAGE within the start timeout",
                   "received": received}, open(os.path.join(out, "result.json"), "w"))
        print("TIMEOUT", flush=True)
        return 1
    print("READY", flush=True)

    phases = []
    for ph in plan["phases"]:
        start = time.time()
        while time.time() - start < ph["duration"]:
            send(ph["send"])
            poll()
            time.sleep(1.0 / plan.get("rate", 20))
        phases.append({"name": ph["name"], "start": start, "end": time.time()})
    end = time.time() + plan.get("collect_after", 2)
    while time.time() < end:
        poll()
        time.sleep(0.005)
    json.dump({"phases": phases, "received": received}, open(os.path.join(out, "result.json"), "w"))
    print("DONE", flush=True)
    client.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
