"""wirelet wire protocol: sans-I/O framing, messages and link state machine."""
