"""wirelet gateway: each attached microcontroller becomes a Kubernetes node."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wirelet")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
