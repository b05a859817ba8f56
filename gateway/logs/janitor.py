"""Remove the logs of pods that are gone from the API, as the kubelet's garbage collection does.

A pod's log directory stays while the pod object exists (so `kubectl logs` of a finished pod
works) and is removed once the API no longer has it. A deletion seen through the watch removes
exactly that pod's directory and spooled output, soon after (deletions that arrive while one
removal runs share the next one); it costs the same whatever the number of pods. A full sweep
(list every pod directory, remove those of pods not live) runs at start-up, for pods deleted
while the gateway was down, and every `interval_s` for anything left behind: a deleted pod that
a runtime still wrote for (its output was still arriving) is not queued again but left to that
sweep. The live pods come from the caller, and nothing is removed before the caller says they
are complete (the first full pod list), so an empty cache never looks like "every pod is gone".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from gateway.logs import cleanup
from gateway.logs.store import LogStore

logger = logging.getLogger(__name__)

# Safety-net sweep; deletions seen through the watch are removed one by one at once.
DEFAULT_SWEEP_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class DeletedPod:
    namespace: str
    name: str
    uid: str


class LogJanitor:
    def __init__(
        self,
        store: LogStore,
        live_uids: Callable[[], Collection[str]],
        is_live: Callable[[str], bool],
        *,
        interval_s: float = DEFAULT_SWEEP_INTERVAL_S,
    ) -> None:
        self.store = store
        self.live_uids = live_uids  # every live pod, for the full sweep
        self.is_live = is_live  # one pod, for a deletion (no set of every pod built per pod)
        self.interval_s = interval_s
        self._queued: dict[str, DeletedPod] = {}  # uid -> pod, in deletion order
        self._wake = asyncio.Event()
        self.sweeps = 0  # full sweeps done
        self.swept = asyncio.Event()  # set after every full sweep (for whoever waits on one)
        self.removals = 0  # batches of deletions done
        self.removed = asyncio.Event()  # set after every batch

    @property
    def queued(self) -> int:
        """Deleted pods whose logs are still to be removed."""
        return len(self._queued)

    def pod_deleted(self, namespace: str, name: str, uid: str) -> None:
        """A pod left the API: remove its logs soon."""
        self._queued[uid] = DeletedPod(namespace, name, uid)
        self._wake.set()

    async def run(self, ready: asyncio.Event) -> None:
        """Sweep once `ready` is set (the live set is complete), then remove deleted pods as
        they come and sweep every `interval_s`."""
        await ready.wait()
        loop = asyncio.get_running_loop()
        while True:
            await self.sweep()
            deadline = loop.time() + self.interval_s
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        await self._wake.wait()
                except TimeoutError:
                    break
                await self.remove_queued()  # not under the timeout: never cut off halfway

    async def remove_queued(self) -> None:
        """Remove the logs of every deleted pod queued so far that no runtime writes for."""
        self._wake.clear()
        batch = [pod for pod in self._queued.values() if not self.is_live(pod.uid)]
        # A pod still in use is dropped too: the periodic sweep removes it once it is not.
        self._queued.clear()
        try:
            removed = await asyncio.to_thread(self._remove, batch) if batch else 0
        except OSError as exc:  # a broken log disk must not stop the gateway
            logger.warning("log cleanup failed: %s; retrying at the next sweep", exc)
            return
        self.removals += 1
        self.removed.set()
        if removed:
            logger.info("removed the logs of %d deleted pod(s)", removed)

    def _remove(self, pods: list[DeletedPod]) -> int:
        return sum(self.store.remove_pod(pod.namespace, pod.name, pod.uid) for pod in pods)

    async def sweep(self) -> None:
        # Whatever is queued now is covered by this sweep (removed, or live and left to the
        # next one); pods deleted while it runs are queued again.
        self._queued.clear()
        # List first, ask who is live second: a directory (or spool entry) is only ever
        # created for a pod already live, so one seen in the listing was live before the
        # snapshot if it still is, and a new pod's directory cannot slip in between.
        root = self.store.config.root
        try:
            directories = await asyncio.to_thread(cleanup.pod_dirs, root)
            spooled = self.store.spool.uids()
            live = set(self.live_uids())
            for uid in spooled:
                if uid not in live:
                    self.store.spool.discard_pod(uid)
            removed = [path for path, uid in directories if uid not in live]
            await asyncio.to_thread(cleanup.remove_dirs, removed)
        except OSError as exc:  # a broken log disk must not stop the gateway
            logger.warning("log cleanup failed: %s; retrying at the next sweep", exc)
            return
        self.sweeps += 1
        self.swept.set()
        if removed:
            logger.info("removed the logs of %d pod(s) no longer in the API", len(removed))
