"""The deterministic state transition: codec, crypto, state, modules and the executive (integers only, no clock, no I/O)."""
