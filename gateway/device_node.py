"""The glue for one device: its session's events drive its node, its runtime and its pods.

Created when the device manager finds a device path. The node appears once the device has
answered its first handshake (the node is named from the device's identity, which only the
handshake tells); from then on link changes become node readiness and task events become pod
status. A failure here is logged and retried; it never touches another device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

from gateway.config import GatewayConfig, node_name_for
from gateway.errors import WireletError
from gateway.kube.api import KubeApi
from gateway.kube.events import EventRecorder
from gateway.kube.node_agent import NodeAgent
from gateway.kube.node_object import NodeFacts, node_capacity
from gateway.kube.pod_controller import NodeBinding, PodController
from gateway.link.events import (
    DeviceFacts,
    LinkStateChanged,
    Reconciled,
    SessionEvent,
    TaskOutput,
)
from gateway.link.session import DeviceSession
from gateway.link.state import LinkState
from gateway.logs.store import LogStore
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.output import OutputSpooler
from gateway.ssh.host import SshHost

log = logging.getLogger(__name__)

# Task events kept while the device is not identified yet (see _handle).
EARLY_EVENTS_LIMIT = 10_000


@dataclass
class NodeSettings:
    node_ip: str
    kubelet_port: int
    backoff: BackoffPolicy


def node_facts(facts: DeviceFacts) -> NodeFacts:
    return NodeFacts(
        device_id=facts.device_id,
        vendor=facts.vendor,
        product=facts.product or facts.firmware_name,
        serial=facts.serial or facts.device_id,
        firmware_name=facts.firmware_name,
        firmware_version=facts.firmware_version,
        transport=facts.transport,
        task_slots=facts.task_slots,
        memory_bytes=facts.memory_bytes,
        apps=facts.apps,
        arch=facts.arch or "unknown",
        gateway_host=socket.gethostname(),
        os=facts.os or "none",
        cpus=facts.cpus,
    )


class DeviceNode:
    """One device path's session, and once identified, its node, runtime and pod binding."""

    def __init__(
        self,
        path: str,
        session: DeviceSession | SshHost,  # a device's link, or an SSH host (gateway.ssh)
        *,
        api: KubeApi,
        config: GatewayConfig,
        settings: NodeSettings,
        controller: PodController,
        events: EventRecorder,
        logs: LogStore,
        informer_synced: asyncio.Event,
        claimed: dict[str, str],
    ) -> None:
        self.path = path
        self.session = session
        self.api = api
        self.config = config
        self.settings = settings
        self.controller = controller
        self.events = events
        self.logs = logs
        self.informer_synced = informer_synced
        self.claimed = claimed  # node name -> device path, shared by all DeviceNodes
        self.name: str | None = None
        self.agent: NodeAgent | None = None
        self.runtime: DeviceRuntime | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self._orphan_task: asyncio.Task[None] | None = None
        self._early: list[SessionEvent] = []
        # Output that arrives before the runtime exists is made durable at once (see _handle).
        self.spooler = OutputSpooler(logs.spool, session, label=path)

    async def run(self) -> None:
        events = self.session.subscribe()
        self.session.start()
        try:
            async for event in events:
                try:
                    self._handle(event)
                except WireletError as exc:
                    log.error("%s: %s", self.path, exc)
        finally:
            with contextlib.suppress(ValueError):  # already closed by the session's close
                events.close()

    def _handle(self, event: SessionEvent) -> None:
        if isinstance(event, Reconciled):
            self._on_reconciled(event)
        elif isinstance(event, LinkStateChanged):
            self._on_link(event)
        elif self.runtime is not None:
            self.runtime.handle(event)
        elif isinstance(event, TaskOutput):
            # A device re-sends unacknowledged output as soon as the link is up, before the
            # handshake's task list says who it is. Held in memory it would fill the device's
            # window and block that very reply; spooled, it is on disk and acknowledged.
            if not self.spooler.take(event.task_id, event.stream, event.offset, event.data):
                self.session.ack_output(event.task_id, event.stream, event.end)
        elif len(self._early) < EARLY_EVENTS_LIMIT:
            # Other task events before the handshake's task list says who the device is (a
            # re-sent exit report, say): replayed to the runtime once it exists.
            self._early.append(event)

    def _ensure_node(self) -> bool:
        """Create node, runtime and binding on the first handshake; False if not ours to serve."""
        if self.name is not None:
            return True
        facts = self.session.facts
        if facts is None:
            return False
        name = node_name_for(self.config.nodes, facts.device_id)
        owner = self.claimed.get(name)
        if owner is not None and owner != self.path:
            log.error(
                "%s: device %s is already served through %s; ignoring this path "
                "(two links to one device?)",
                self.path,
                facts.device_id,
                owner,
            )
            return False
        self.claimed[name] = self.path
        self.name = name
        nfacts = node_facts(facts)
        self.agent = NodeAgent(
            self.api,
            name,
            nfacts,
            self.config.nodes,
            node_ip=self.settings.node_ip,
            kubelet_port=self.settings.kubelet_port,
            events=self.events,
        )
        self._agent_task = asyncio.create_task(self.agent.run(), name=f"node {name}")
        self.controller.add_node(NodeBinding(name, node_capacity(nfacts, self.config.nodes)))
        self.runtime = DeviceRuntime(
            self.session,
            self.logs,
            apps=facts.apps,
            backoff=self.settings.backoff,
            on_change=self.controller.changed,
            on_finished=self.controller.finished,
            on_event=self.controller.runtime_event,
            label=name,
            spooler=self.spooler,
        )
        return True

    def _on_reconciled(self, event: Reconciled) -> None:
        """The device's task list (every handshake): what may be adopted, what is orphaned."""
        if not self._ensure_node():
            return
        assert self.runtime is not None
        self.runtime.device_tasks = {t.task_id: t for t in event.device_tasks}
        early, self._early = self._early, []
        for pending in early:
            self.runtime.handle(pending)

    def _attach(self) -> None:
        """First time up: hand the runtime every pod bound to this node."""
        assert self.runtime is not None and self.name is not None
        self.runtime.link_up = True
        self.controller.attach_runtime(
            self.name, self.runtime, known_pods=self.informer_synced.is_set()
        )
        if not self.informer_synced.is_set():
            task = asyncio.ensure_future(self._orphans_after_sync())
            task.set_name(f"orphans {self.name}")
            self._orphan_task = task

    async def _orphans_after_sync(self) -> None:
        await self.informer_synced.wait()
        assert self.name is not None
        self.controller.stop_orphans(self.name)

    def _on_link(self, event: LinkStateChanged) -> None:
        up = event.new is LinkState.UP
        if up:
            self._ensure_node()
        if self.agent is None or self.runtime is None or self.name is None:
            if event.new is LinkState.DOWN and event.reason:
                log.warning("%s: %s", self.path, event.reason)
            return
        if event.new not in (LinkState.UP, LinkState.DOWN, LinkState.CLOSED):
            return
        if up:
            port = self.session.facts.port if self.session.facts else "?"
            self.agent.set_link(True, "KubeletReady", f"device link up on {port}")
        else:
            self.agent.set_link(
                False, "DeviceDisconnected", f"device link down: {event.reason or event.new.value}"
            )
        if up and self.controller.nodes[self.name].runtime is None:
            self._attach()
        else:
            self.runtime.link_changed(up)
        self.controller.set_node_ready(self.name, up)

    async def close(self) -> None:
        if self.runtime is not None:
            await self.runtime.close()
        await self.spooler.close()
        task = self._agent_task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        orphan = self._orphan_task
        if orphan is not None:
            orphan.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await orphan
