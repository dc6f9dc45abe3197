"""End-to-end tests: several real processes (control plane, SDK apps) over loopback."""
