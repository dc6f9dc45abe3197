"""The OpenSergo control plane: store -> snapshots -> SubscribeConfig streams, plus REST and metadata."""
