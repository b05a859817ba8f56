"""Transports move bytes to and from a device, and nothing else."""

from gateway.transport.base import Transport, TransportOpener
from gateway.transport.serial import SerialSettings, SerialTransport, serial_opener

__all__ = ["SerialSettings", "SerialTransport", "Transport", "TransportOpener", "serial_opener"]
