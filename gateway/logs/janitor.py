"""Remove the logs of pods that are gone from the API, as the kubelet's garbage collection does.

A pod's log directory stays while the pod object exists (so `kubectl logs` of a finished pod
works) and is removed once the API no longer has it: right after a deletion is seen, at
start-up for pods deleted while the gateway was down, and every `interval_s` for anything a
sweep had to leave (a pod whose output was still being written when it went). The set of live
pods comes from the caller, and no sweep runs before the caller says that set is complete (the
first full pod list), so an empty cache never looks like "every pod is gone".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from gateway.logs import cleanup
from gateway.logs.store import LogStore

logger = logging.getLogger(__name__)

# Safety-net sweep; deletions seen through the watch are swept at once.
DEFAULT_SWEEP_INTERVAL_S = 60.0


class LogJanitor:
    def __init__(
        self,
        store: LogStore,
        live_uids: Callable[[], Collection[str]],
        *,
        interval_s: float = DEFAULT_SWEEP_INTERVAL_S,
    ) -> None:
        self.store = store
        self.live_uids = live_uids
        self.interval_s = interval_s
        self._poked = asyncio.Event()
        self.sweeps = 0
        self.swept = asyncio.Event()  # set after every sweep (for whoever waits on one)

    def pod_deleted(self) -> None:
        """A pod left the API: sweep soon (several deletions in a row share one sweep)."""
        self._poked.set()

    async def run(self, ready: asyncio.Event) -> None:
        """Sweep once `ready` is set (the live set is complete), then on deletions and timer."""
        await ready.wait()
        while True:
            self._poked.clear()
            await self.sweep()
            try:
                async with asyncio.timeout(self.interval_s):
                    await self._poked.wait()
            except TimeoutError:
                pass

    async def sweep(self) -> None:
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
