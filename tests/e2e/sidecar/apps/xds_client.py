"""A proxyless gRPC client: ``xds:///SERVICE`` with GRPC_XDS_BOOTSTRAP set by the caller.

Usage: xds_client.py SERVICE COUNT [header=value ...]

Prints one JSON object: server name -> number of answers (errors under "error:<code>").
"""

from __future__ import annotations

import collections
import json
import sys

import grpc


def main() -> None:
    service, count, *pairs = sys.argv[1:]
    metadata = tuple(tuple(pair.split("=", 1)) for pair in pairs)
    seen: collections.Counter[str] = collections.Counter()
    with grpc.insecure_channel(f"xds:///{service}") as channel:
        call = channel.unary_unary("/echo.Echo/Call")
        for _ in range(int(count)):
            try:
                seen[call(b"hi", timeout=10, metadata=metadata, wait_for_ready=True).decode()] += 1
            except grpc.RpcError as err:
                seen[f"error:{err.code().name}:{err.details()}"] += 1
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
