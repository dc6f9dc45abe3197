"""A data plane that offers load to one resource guarded by Global limits (cluster flow tests).

Usage: cluster_client.py ENDPOINT RESOURCE RATE SECONDS [HOLD_SECONDS]
Prints JSON lines: {"mode": "global"|"local", "at": t} on every mode change, and at the end
{"admitted": {second: count}, "blocked": n, "behind": [second, ...], "unanswered": [second, ...]}:
"behind" are the seconds in which this load generator itself fell behind its schedule (a request
sent more than LATE_S after its slot: the process was not scheduled), so that second's offered
load was not the rate; "unanswered" are the seconds in which a token request went unanswered past
the client's timeout (20 ms), so calls used the local share, as designed for a slow service.
With HOLD_SECONDS, each admitted request holds its concurrency permit that long (and the process
keeps running).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from opensergo.client import Heartbeat, OpenSergoClient
from opensergo.governance import BlockedError, Engine
from opensergo.governance.faulttolerance.engine import KINDS

FT = "fault-tolerance.opensergo.io/v1alpha1"
INSTANCES = "discovery.opensergo.io/v1alpha1/ServiceInstance"
LATE_S = 0.05


def main() -> None:
    endpoint, resource, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    hold = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    engine = Engine()
    client = OpenSergoClient(endpoint, app="cluster-app", snapshot=None, heartbeat=Heartbeat(interval=1.0))
    for kind in KINDS:
        client.subscribe(f"{FT}/{kind}", callback=lambda objs, _v, kind=kind: engine.update_kind(kind, objs))
    client.subscribe(INSTANCES, callback=lambda objs, _v: engine.set_instance_count(len(objs)))
    tokens = client.token_client()  # on the client's connection: the replica its subscriptions use
    unanswered: set[int] = set()
    mark_slow = tokens.mark_slow

    def timed_out(seconds: float = 1.0) -> None:  # the engine calls this on each timeout
        unanswered.add(int(time.time()))
        mark_slow(seconds)

    tokens.mark_slow = timed_out  # type: ignore[method-assign]
    engine.set_token_source(tokens)
    client.start()
    client.wait_synced(10)
    print(json.dumps({"ready": True}), flush=True)

    def watch_mode() -> None:
        mode = None
        while True:
            now = "global" if tokens.usable else "local"
            if now != mode:
                mode = now
                print(
                    json.dumps({"mode": mode, "at": time.time(), "instances": engine.instances}), flush=True
                )
            time.sleep(0.01)

    threading.Thread(target=watch_mode, daemon=True).start()
    admitted: dict[int, int] = {}
    blocked = 0
    behind: set[int] = set()
    held = []
    interval = 1.0 / rate
    deadline = time.time() + seconds
    next_at = time.time()
    while time.time() < deadline:
        sent = time.time()
        if sent - next_at > LATE_S:  # the slot's second offered less, the sending second more
            behind.update((int(next_at), int(sent)))
        try:
            entry = engine.entry(resource)
            admitted[int(time.time())] = admitted.get(int(time.time()), 0) + 1
            if hold:
                held.append(entry)
            else:
                entry.exit()
        except BlockedError:
            blocked += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.time()))
    result = {
        "admitted": admitted,
        "blocked": blocked,
        "behind": sorted(behind),
        "unanswered": sorted(unanswered),
    }
    print(json.dumps(result), flush=True)
    if hold:
        time.sleep(hold)
    client.stop()


if __name__ == "__main__":
    main()
