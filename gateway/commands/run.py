"""`wirelet run`: the gateway itself, serving every configured device until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.commands.log_limits import RepeatLimit
from gateway.config import GatewayConfig, load_config
from gateway.config_ssh import parse_host_flag
from gateway.errors import ConfigError, WireletError
from gateway.link.connection import TRACE

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="serve the attached devices as Kubernetes nodes",
        description="Run the gateway: one virtual node per device, until SIGINT/SIGTERM.",
    )
    add_run_flags(parser)
    parser.set_defaults(func=main)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="TOML config file (see docs/config.md)")
    parser.add_argument("--kubeconfig", help="kubeconfig path, or 'in-cluster'")
    parser.add_argument("--port", dest="ports", action="append", help="a device tty; repeatable")
    parser.add_argument(
        "--dir", dest="dirs", action="append", help="a directory of device links; repeatable"
    )
    parser.add_argument(
        "--udev", action="store_true", default=None, help="watch udev for tagged devices"
    )
    parser.add_argument(
        "--usb",
        action="append",
        metavar="SELECTOR",
        help="raw USB devices by VID:PID, VID:PID:SERIAL, serial=S or bus path; repeatable",
    )
    # SSH hosts as nodes (docs/ssh.md); more settings per host in [[ssh.hosts]].
    parser.add_argument(
        "--ssh",
        action="append",
        metavar="[USER@]HOST[:PORT]",
        help="serve an SSH host as a node; repeatable",
    )
    parser.add_argument("--ssh-key", help="private key for the --ssh hosts")
    parser.add_argument(
        "--ssh-known-hosts", help="known_hosts file that verifies the --ssh hosts' keys"
    )
    parser.add_argument("--node-prefix", help="node name prefix (default 'wirelet-')")
    parser.add_argument("--kubelet-address", help="kubelet API listen address")
    parser.add_argument(
        "--kubelet-port", type=_integer, help="kubelet API port (default 10250, 0: any free)"
    )
    parser.add_argument("--node-ip", help="address advertised for the kubelet API")
    parser.add_argument("--tls-cert", help="kubelet API serving certificate (PEM)")
    parser.add_argument("--tls-key", help="kubelet API serving key (PEM)")
    parser.add_argument("--client-ca", help="CA that signs client certificates (PEM)")
    parser.add_argument("--log-dir", help="where container logs are written")
    parser.add_argument(
        "--state-dir", help="the gateway's identity and private files (default /var/lib/wirelet)"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


# Which config key each flag sets, so a bad flag value gets the file's checks and message.
FLAG_KEYS = {
    "kubeconfig": ("kube", "kubeconfig", "--kubeconfig"),
    "node_prefix": ("nodes", "name_prefix", "--node-prefix"),
    "kubelet_address": ("kubelet", "address", "--kubelet-address"),
    "kubelet_port": ("kubelet", "port", "--kubelet-port"),
    "node_ip": ("kubelet", "node_ip", "--node-ip"),
    "tls_cert": ("kubelet", "tls_cert", "--tls-cert"),
    "tls_key": ("kubelet", "tls_key", "--tls-key"),
    "client_ca": ("kubelet", "client_ca", "--client-ca"),
    "log_dir": ("logs", "dir", "--log-dir"),
    "state_dir": ("gateway", "state_dir", "--state-dir"),
    "ports": ("devices", "ports", "--port"),
    "dirs": ("devices", "dirs", "--dir"),
    "udev": ("devices", "udev", "--udev"),
    "usb": ("devices", "usb", "--usb"),
}


def _integer(text: str) -> int | str:
    """An integer, or the text as given so the config check reports it with the others."""
    try:
        return int(text)
    except ValueError:
        return text


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """The file, with every given flag validated as the key it overrides (same messages)."""
    overrides: dict[str, dict[str, Any]] = {}
    flags: dict[str, str] = {}
    for attr, (section, key, flag) in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        overrides.setdefault(section, {})[key] = list(value) if isinstance(value, list) else value
        flags[f"{section}.{key}"] = flag
    return _with_ssh_flags(load_config(args.config, overrides, flags), args)


def check_device_dirs(config: GatewayConfig) -> None:
    """A device directory that is a file is an error; a missing one is said out loud (it may
    appear later, as /dev/serial/by-id does with the first device)."""
    for directory in config.devices.dirs:
        if os.path.exists(directory) and not os.path.isdir(directory):
            raise ConfigError(f"devices.dirs: {directory} exists but is not a directory")
        if not os.path.exists(directory):
            log.warning(
                "devices.dirs: %s does not exist (yet); watching for it to appear", directory
            )


def _with_ssh_flags(config: GatewayConfig, args: argparse.Namespace) -> GatewayConfig:
    """--ssh hosts join the [[ssh.hosts]] of the file, with --ssh-key/--ssh-known-hosts."""
    hosts = [parse_host_flag(text) for text in getattr(args, "ssh", None) or ()]
    settings: dict[str, Any] = {}
    if getattr(args, "ssh_key", None):
        settings["key"] = str(Path(args.ssh_key).expanduser())
    if getattr(args, "ssh_known_hosts", None):
        settings["known_hosts"] = str(Path(args.ssh_known_hosts).expanduser())
    hosts = [dataclasses.replace(host, **settings) for host in hosts]
    if not hosts:
        return config
    ssh = dataclasses.replace(config.ssh, hosts=(*config.ssh.hosts, *hosts))
    return dataclasses.replace(config, ssh=ssh)


def setup_logging(verbose: int) -> None:
    # -vvv: every byte on the device links too (the link's TRACE level)
    level = TRACE if verbose > 2 else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbose < 1:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        for handler in logging.getLogger().handlers:
            handler.addFilter(RepeatLimit())


async def serve_until_signalled(gateway: Gateway) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with gateway:
        await stop.wait()
        log.info("stopping (device tasks keep running; they are adopted on the next start)")


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, on uvloop's event loop when it is installed (`pip install wirelet[fast]`):
    at 1000 devices the loop's own work (epoll, timers, TLS, transports) is a large share of
    the gateway's CPU. WIRELET_EVENT_LOOP=asyncio keeps the standard loop."""
    if os.environ.get("WIRELET_EVENT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    try:
        config = config_from_args(args)
        check_device_dirs(config)
        run_loop(serve_until_signalled(Gateway(config)))
    except ConfigError as exc:
        print(f"wirelet: config error: {exc}", file=sys.stderr)
        return 2
    except WireletError as exc:
        print(f"wirelet: {exc}", file=sys.stderr)
        return 1
    return 0
