"""Fault-tolerance strategies (one module each) and the engine that compiles them."""
