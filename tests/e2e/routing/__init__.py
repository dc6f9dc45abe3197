"""End-to-end routing: providers, a consumer and a chain of hops, all registered through the SDK."""
