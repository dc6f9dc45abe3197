"""Sharding: ShardingSphere's rule model (tables, strategies, algorithms, key generators), the
per-statement routing and rewrite over sqlglot trees, and the merge of results across nodes."""
