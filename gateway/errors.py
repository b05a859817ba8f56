"""One exception root for the gateway, with a subtree per layer.

Timeouts also subclass the builtin TimeoutError so callers can catch either.
"""

from __future__ import annotations


class WireletError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(WireletError):
    """The configuration file or a flag is wrong; the message names the key and the expected form."""
