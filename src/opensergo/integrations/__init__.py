"""Framework integrations: inbound middlewares and outbound clients that apply OpenSergo governance.

Each integration is its own module and imports its framework lazily, so installing one framework
never requires the others (``opensergo.integrations.httpx`` needs httpx, ``.requests`` needs
requests, ``.grpc_client`` needs grpcio).
"""
