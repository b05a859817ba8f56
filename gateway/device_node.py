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
from collections.abc import Callable
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
    DeviceLogLine,
    Reconciled,
    SessionEvent,
    SessionStateChanged,
    TaskExited,
    TaskLost,
    TaskOutput,
    TaskStarted,
)
from gateway.link.session import DeviceSession
from gateway.link.state import SessionState
from gateway.logs.firmware import FirmwareLogger
from gateway.logs.store import LogStore
from gateway.node_registry import NodeRegistry
from gateway.runtime.backoff import BackoffPolicy
from gateway.runtime.device_runtime import DeviceRuntime
from gateway.runtime.output import OutputSpooler
from gateway.ssh.host import SshHost
from gateway.tasks import TaskSet

log = logging.getLogger(__name__)

# Before the device is identified (see _handle): output kept up to this many bytes, and
# events of at most this many tasks (a device runs at most 255; the rest are not ours).
EARLY_OUTPUT_LIMIT = 4 * 1024 * 1024
EARLY_TASKS_LIMIT = 1024


class EarlyEvents:
    """Task events that arrive before the device's task list tells who it is, kept for the
    runtime. Bounded without losing state: per task only whether it started and how it ended
    (the last word wins) are kept, plus its output up to a byte budget; output past the budget
    is dropped (left unacknowledged) and counted."""

    def __init__(self) -> None:
        self.dropped_output = 0  # bytes
        self.dropped_tasks = 0  # events of tasks beyond EARLY_TASKS_LIMIT
        self._reset()

    def _reset(self) -> None:
        self._started: set[str] = set()
        self._ended: dict[str, TaskExited | TaskLost] = {}
        self._output: dict[str, list[TaskOutput]] = {}
        self._order: dict[str, None] = {}  # task ids in order of first appearance
        self.output_bytes = 0

    def add(self, event: SessionEvent) -> None:
        task_id = getattr(event, "task_id", None)
        if task_id is None:
            return
        if task_id not in self._order:
            if len(self._order) >= EARLY_TASKS_LIMIT:
                self.dropped_tasks += 1
                return
            self._order[task_id] = None
        if isinstance(event, TaskStarted):
            self._started.add(task_id)
        elif isinstance(event, TaskExited | TaskLost):
            self._ended[task_id] = event
        elif isinstance(event, TaskOutput):
            if self.output_bytes + len(event.data) > EARLY_OUTPUT_LIMIT:
                self.dropped_output += len(event.data)
                return
            self._output.setdefault(task_id, []).append(event)
            self.output_bytes += len(event.data)

    def drain(self) -> list[SessionEvent]:
        """Per task, in the order the device said it: started, its output, how it ended."""
        events: list[SessionEvent] = []
        for task_id in self._order:
            if task_id in self._started:
                events.append(TaskStarted(task_id))
            events.extend(self._output.get(task_id, ()))
            ended = self._ended.get(task_id)
            if ended is not None:
                events.append(ended)
        self._reset()
        return events


@dataclass
class NodeSettings:
    node_ip: str
    kubelet_port: int
    backoff: BackoffPolicy
    owner: str = ""  # this gateway's identity, recorded as the owner of its nodes
    # The node's own kubelet endpoint port, opened on first use (None: the shared port).
    port_for: Callable[[str], int] | None = None


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
        boot_id=facts.boot_id,
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
        registry: NodeRegistry[DeviceNode],
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
        self.registry = registry  # who claimed which node name, shared by all DeviceNodes
        self.name: str | None = None
        self.agent: NodeAgent | None = None
        self.runtime: DeviceRuntime | None = None
        self._tasks = TaskSet(path)  # the node agent's loop, the orphan check
        # Until the node is ours (see NodeAgent.claim) nothing reaches the runtime: the latest
        # task list and link state wait here, task events in _early, output in the spool.
        self.served = False
        self._reconciled: Reconciled | None = None
        self._link_up = False
        # Output that arrives before the runtime exists is made durable at once (see _handle).
        self.spooler = OutputSpooler(logs.spool, session, label=path)
        self._early = EarlyEvents()
        self.firmware = FirmwareLogger(path)  # the device's DEVICE_LOG lines
        # Devices seen on this path before the one there now (a board swapped behind the same
        # USB-serial adapter): node name -> its agent, runtime and whether it was served.
        self._away: dict[str, tuple[NodeAgent, DeviceRuntime | None, bool]] = {}
        self._agent_tasks: dict[str, asyncio.Task[None]] = {}  # node name -> its agent's loop

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
        self._check_identity()
        if isinstance(event, DeviceLogLine):
            self._firmware_line(event)
        elif isinstance(event, Reconciled):
            self._on_reconciled(event)
        elif isinstance(event, SessionStateChanged):
            self._on_link(event)
        elif self.runtime is not None and self.served:
            self.runtime.handle(event)
        elif isinstance(event, TaskOutput):
            # A device re-sends unacknowledged output as soon as the link is up, before the
            # handshake's task list says who it is. Held in memory it would fill the device's
            # window and block that very reply; spooled, it is on disk and acknowledged.
            if not self.spooler.take(event.task_id, event.stream, event.offset, event.data):
                self.session.ack_output(event.task_id, event.stream, event.end)
        else:
            # Other task events before the handshake's task list says who the device is (a
            # re-sent exit report, say): kept per task, replayed to the runtime once it exists.
            self._early.add(event)

    def _memory(self) -> tuple[int, int] | None:
        """The device's memory in use (last heartbeat) and total (handshake), bytes."""
        load, facts = self.session.load, self.session.facts
        if load is None or facts is None:
            return None
        return load.memory_bytes, facts.memory_bytes

    def _firmware_line(self, event: DeviceLogLine) -> None:
        """To the gateway's log, and to the node's firmware log file (served under the node's
        `/logs/`): attached when the device's node is named (`_ensure_node`), lines before
        that kept until then."""
        self.firmware.line(event.level, event.text, event.uptime_ms)

    def _check_identity(self) -> None:
        """Another device answered on this path (a board swapped behind the same adapter or
        port): the node of the one before goes NotReady and keeps its pods, as for a device
        that is away; the new one gets its own node. Checked before any event reaches a
        runtime, so no task of one device is ever taken for the other's."""
        facts = self.session.facts
        agent = self.agent
        if facts is None or agent is None or self.name is None:
            return
        before = agent.facts.device_id
        if facts.device_id == before:
            return
        log.warning(
            "%s: device %s answers here now, not %s: node %s goes NotReady (its pods wait for "
            "that device), device %s is served as its own node",
            self.path,
            facts.device_id,
            before,
            self.name,
            facts.device_id,
        )
        agent.set_link(
            False, "DeviceReplaced", f"device {facts.device_id} took its place on {self.path}"
        )
        if self.runtime is not None and self.served:
            self.runtime.link_changed(False)
            self.controller.set_node_ready(self.name, False)
        self.registry.release(self.name, self.path)
        self._away[self.name] = (agent, self.runtime, self.served)
        self.name, self.agent, self.runtime, self.served = None, None, None, False
        self.firmware.detach()
        self._reconciled = None
        self._early = EarlyEvents()

    def _ensure_node(self) -> bool:
        """Start claiming the node on the first handshake; True once it is ours to serve."""
        if self.name is not None:
            return self.served
        facts = self.session.facts
        if facts is None:
            return False
        name = node_name_for(self.config.nodes, facts.device_id)
        owner = self.registry.claim(name, self.path)
        if owner is not None:
            other = self.registry.get(owner)
            if other is None or not other.away_with(name):
                log.error(
                    "%s: device %s is already served through %s; ignoring this path "
                    "(two links to one device?)",
                    self.path,
                    facts.device_id,
                    owner,
                )
                return False
            log.warning(
                "%s: device %s answers here now, its link on %s is down (moved to another "
                "port?): node %s is served from this path",
                self.path,
                facts.device_id,
                owner,
                name,
            )
            other.hand_over(name)
            self.registry.claim(name, self.path)
        for other in list(self.registry.values()):
            if other is not self and other.away_with(name):
                other.hand_over(name)  # kept aside there after another device took its place
        self.name = name
        self.firmware.attach(self.logs.firmware_log(name))  # with the lines logged until now
        away = self._away.pop(name, None)
        if away is not None:  # that device is back on this path: its node, as it was left
            agent, self.runtime, self.served = away
            self.agent = agent
            agent.set_facts(node_facts(facts))
            # After this handshake's task list is handled: bind it if it was claimed while
            # away, else tell it (and the pods) the link is up.
            asyncio.get_running_loop().call_soon(self._back_on_this_path, agent)
            return self.served
        agent = self.agent = NodeAgent(
            self.api,
            name,
            node_facts(facts),
            self.config.nodes,
            node_ip=self.settings.node_ip,
            kubelet_port=self._kubelet_port(name),
            owner=self.settings.owner,
            events=self.events,
            on_owned=lambda: self._on_owned_by(agent),
            on_lost=lambda owner: self._on_lost_by(agent, owner),
            memory_of=self._memory,
        )
        if self._link_up:  # a device that took another's place: the link is up already
            self._report_link_up(agent)
        self._agent_tasks[name] = self._tasks.spawn(agent.run(), f"node {name}")
        return False

    def away_with(self, name: str) -> bool:
        """Node `name` is this path's (now, or kept aside) and its device is not here."""
        return name in self._away or (self.name == name and not self._link_up)

    def hand_over(self, name: str) -> None:
        """Node `name`'s device answers on another path now: stop serving it from here. Its
        agent stops, its runtime closes, and its pods wait for the runtime of the other path,
        which takes them up as a restarted gateway would (the device's task list, the pods'
        recorded status)."""
        if self.name == name:
            runtime = self.runtime
            self.name, self.agent, self.runtime, self.served = None, None, None, False
            self.firmware.detach()
            self._reconciled = None
            self._early = EarlyEvents()
        else:
            _, runtime, _ = self._away.pop(name)
        self.registry.release(name, self.path)
        self.controller.detach_runtime(name)
        self._tasks.spawn(
            self._retire(self._agent_tasks.pop(name, None), runtime), f"retire {name}"
        )

    async def _retire(
        self, agent_task: asyncio.Task[None] | None, runtime: DeviceRuntime | None
    ) -> None:
        if agent_task is not None:
            agent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent_task
        if runtime is not None:
            await runtime.close()

    def _report_link_up(self, agent: NodeAgent) -> None:
        port = self.session.facts.port if self.session.facts else "?"
        agent.set_link(True, "KubeletReady", f"device link up on {port}")

    def _back_on_this_path(self, agent: NodeAgent) -> None:
        if agent is not self.agent or not self._link_up:
            return
        self._report_link_up(agent)
        if not self.served:
            if agent.owned:
                self._on_owned_by(agent)
            return
        assert self.runtime is not None
        self.runtime.lose_unlisted()
        self._serve_link(True)

    def _on_owned_by(self, agent: NodeAgent) -> None:
        """The node is ours (claimed by the agent): bind it, and hand over what waited."""
        if agent is not self.agent:
            return  # the node of a device no longer on this path
        assert self.agent is not None and self.name is not None
        self.served = True
        if self.runtime is None:
            facts = self.agent.facts
            self.controller.add_node(
                NodeBinding(self.name, node_capacity(facts, self.config.nodes))
            )
            self.runtime = DeviceRuntime(
                self.session,
                self.logs,
                apps=facts.apps,
                backoff=self.settings.backoff,
                on_change=self.controller.changed,
                on_finished=self.controller.finished,
                on_event=self.controller.runtime_event,
                label=self.name,
                spooler=self.spooler,
                max_frame=self.session.facts.max_frame if self.session.facts else None,
                task_slots=self.session.facts.task_slots if self.session.facts else None,
            )
        if self._reconciled is not None:
            self._on_reconciled(self._reconciled)
        if self._link_up:
            self._serve_link(True)

    def _on_lost_by(self, agent: NodeAgent, owner: str) -> None:
        """Another gateway took the node over: this device's tasks are no longer ours to run."""
        if agent is not self.agent:
            return
        if self.runtime is not None and self.served:
            self.runtime.link_changed(False)
        self.served = False

    def _kubelet_port(self, name: str) -> int:
        if self.settings.port_for is None:
            return self.settings.kubelet_port
        try:
            return self.settings.port_for(name)
        except WireletError as exc:
            # Still served, through the shared port, which answers for all of the gateway's
            # nodes: node proxy requests for this node then see the others too.
            log.error("%s: %s; advertising the shared kubelet port", name, exc)
            return self.settings.kubelet_port

    def _on_reconciled(self, event: Reconciled) -> None:
        """The device's task list (every handshake): what may be adopted, what is orphaned."""
        self._reconciled = event
        self._refresh_facts()
        if not self._ensure_node():
            return
        assert self.runtime is not None
        self._reconciled = None
        self.runtime.reconciled(event.device_tasks)
        if self._early.dropped_output or self._early.dropped_tasks:
            log.warning(
                "%s: before the device was identified, %d bytes of output and the events of "
                "%d task(s) beyond the first %d did not fit and were dropped",
                self.path,
                self._early.dropped_output,
                self._early.dropped_tasks,
                EARLY_TASKS_LIMIT,
            )
            self._early.dropped_output = self._early.dropped_tasks = 0
        binding = self.controller.nodes.get(self.name) if self.name else None
        if binding is not None and binding.runtime is not None:
            self._replay_early()
        # else `_attach` replays them once the pods are handed over: an exit replayed before
        # its pod is known would be dropped, and the pod adopted as running forever.

    def _refresh_facts(self) -> None:
        """Every handshake tells the device's facts again: a reboot (new boot id) or new
        firmware (version, apps, slots, memory) reaches the node and what runs on it."""
        facts = self.session.facts
        if facts is None or self.agent is None:
            return
        self.agent.set_facts(node_facts(facts))
        if self.runtime is not None:
            self.runtime.device_changed(facts.apps, facts.max_frame, facts.task_slots)
        binding = self.controller.nodes.get(self.name) if self.name else None
        if binding is not None:
            binding.allocatable = node_capacity(self.agent.facts, self.config.nodes)

    def _replay_early(self) -> None:
        assert self.runtime is not None
        for pending in self._early.drain():
            self.runtime.handle(pending)

    def _attach(self) -> None:
        """First time up: hand the runtime every pod bound to this node."""
        assert self.runtime is not None and self.name is not None
        self.runtime.link_changed(True)
        self.controller.attach_runtime(
            self.name, self.runtime, known_pods=self.informer_synced.is_set()
        )
        self._replay_early()
        if not self.informer_synced.is_set():
            self._tasks.spawn(self._orphans_after_sync(), f"orphans {self.name}")

    async def _orphans_after_sync(self) -> None:
        await self.informer_synced.wait()
        assert self.name is not None
        self.controller.stop_orphans(self.name)

    def _on_link(self, event: SessionStateChanged) -> None:
        up = event.new is SessionState.UP
        if event.new in (SessionState.UP, SessionState.DOWN, SessionState.CLOSED):
            self._link_up = up  # also before the node is ours: see away_with
        if up:
            self._ensure_node()
        if self.agent is None or self.name is None:
            if event.new is SessionState.DOWN and event.reason:
                log.warning("%s: %s", self.path, event.reason)
            return
        if event.new not in (SessionState.UP, SessionState.DOWN, SessionState.CLOSED):
            return
        self._link_up = up
        if up:
            self._report_link_up(self.agent)
        else:
            self.agent.set_link(
                False, "DeviceDisconnected", f"device link down: {event.reason or event.new.value}"
            )
        if self.served:
            self._serve_link(up)

    def _serve_link(self, up: bool) -> None:
        assert self.runtime is not None and self.name is not None
        if up and self.controller.nodes[self.name].runtime is None:
            self._attach()
        else:
            self.runtime.link_changed(up)
        self.controller.set_node_ready(self.name, up)

    async def close(self) -> None:
        runtimes = [self.runtime, *(runtime for _, runtime, _ in self._away.values())]
        for runtime in runtimes:
            if runtime is not None:
                await runtime.close()
        await self.spooler.close()
        await self._tasks.stop()
