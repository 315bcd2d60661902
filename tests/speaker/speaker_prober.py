"""Test helper: run one Prober inside a network namespace and drive it with JSON lines on stdin.

Started as ``ip netns exec NODE python speaker_prober.py`` (packet sockets bind in the namespace of the process
that opens them). Commands, one per line, each answered by one JSON line {"reply": ...}:

    {"cmd": "targets", "targets": {"node-a": {"probe": "192.0.2.100", "vips": ["192.0.2.100"]}}}
    {"cmd": "probe", "owner": "node-a"}       -> {"reply": true}   (false: no MAC known, nothing sent)
    {"cmd": "seen"}                           -> {"reply": {"node-a": {"iface": "eth0", "mac": "02:..."}}}
    {"cmd": "counts"}                         -> {"reply": {"sent": 3, "heard": 4}}
    {"cmd": "stop"}

Each owner heard is printed as {"event": {"heard": "node-a"}}. Test scaffolding only; no probing logic.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from speaker.packets import mac_str
from speaker.prober import Prober, Target

_out_lock = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


def main() -> int:
    prober = Prober(on_heard=lambda owner: emit({"event": {"heard": owner}}), exclude="^(lo)$")
    prober.start()
    emit({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        cmd = req.get("cmd")
        reply: Any = None
        if cmd == "targets":
            prober.set_targets({o: Target(t["probe"], frozenset(t["vips"])) for o, t in req["targets"].items()})
            reply = True
        elif cmd == "probe":
            reply = prober.probe(req["owner"])
        elif cmd == "seen":
            reply = {o: {"iface": s.iface, "mac": mac_str(s.mac)} for o, s in prober.seen().items()}
        elif cmd == "counts":
            reply = {"sent": prober.sent, "heard": prober.heard}
        elif cmd == "stop":
            prober.stop()
            emit({"reply": True})
            return 0
        emit({"reply": reply})
    prober.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
