"""A process that registers one instance through the SDK and then idles (for discovery tests).

Usage: instance.py ENDPOINT APP PORT [label=value ...]
"""

from __future__ import annotations

import signal
import sys
import threading

from opensergo.client import Heartbeat, InstanceInfo, OpenSergoClient, ServiceInfo


def main() -> None:
    endpoint, app, port, *label_args = sys.argv[1:]
    labels = dict(arg.split("=", 1) for arg in label_args)
    client = OpenSergoClient(
        endpoint,
        app=app,
        heartbeat=Heartbeat(interval=0.5),
        instance=InstanceInfo(labels=labels),
        snapshot=None,
        service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=[f"127.0.0.1:{port}"])],
    )
    client.subscribe("fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy")
    client.start()
    print("started", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    client.stop()


if __name__ == "__main__":
    main()
