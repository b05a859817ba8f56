"""The link layer: one `DeviceSession` per device drives the protocol over a transport."""
