"""How a pod's status reaches the API server: a PUT of the pod as last seen with the new status
(its resourceVersion guards it, as virtual-kubelet's UpdateStatus), else a JSON merge patch
carrying the pod's uid (as the kubelet patches; the API server refuses it for another pod of the
same name as a change of an immutable field, see `another_pod`).

Why a PUT first: for a merge patch the API server reads the stored pod, encodes it, merges and
decodes the result before the update proper; a replacement skips that work, and in a burst of
pod starts the API server's CPU is what every pod waits for (bench/pods.py prints the API
server's time per write kind). The status sent is the merge patch applied to the pod's status
as last seen, so both ways store the same thing.

The copy a PUT is built from can be older than the stored pod: someone changed it since the
watch showed it, or the watch has not yet shown our own last write. The resourceVersion turns
that into a 409, and the merge patch (which needs no version) follows. A gateway whose role lacks
`update` on pods/status (deploy/rbac.yaml of before) writes by merge patch from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from gateway.kube.api import KubeApiError
from gateway.kube.pod_view import PodView

log = logging.getLogger(__name__)


class StatusApi(Protocol):
    # answer=False: the answer (the whole pod) is not read (see KubeApi.request).
    async def patch(
        self, path: str, body: Any, *, kind: str = "merge", answer: bool = True
    ) -> Any: ...

    async def replace(self, path: str, body: Any, *, answer: bool = True) -> Any: ...


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch applied to a copy of `target` (which is left as it is)."""
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping):
            base = merged.get(key)
            merged[key] = merge_patch(base if isinstance(base, Mapping) else {}, value)
        else:
            merged[key] = value
    return merged


def another_pod(exc: KubeApiError) -> bool:
    """Whether a status write was refused because the pod of that name is not the one the
    write was for (deleted and created again): the PUT's resourceVersion or uid conflicts
    (409), the patch's uid is refused as a change of an immutable field (422 on metadata.uid)."""
    if exc.conflict:
        return True
    if exc.status != 422 or not isinstance(exc.body, dict):
        return False
    causes = (exc.body.get("details") or {}).get("causes") or []
    return any(isinstance(c, dict) and c.get("field") == "metadata.uid" for c in causes)


class StatusWriter:
    """Writes pod statuses; counts how each went (for tests and benchmarks)."""

    def __init__(self, api: StatusApi) -> None:
        self.api = api
        self.by_replace = True  # False once the role turned out to lack update on pods/status
        self.replaced = 0
        self.patched = 0
        self.conflicts = 0  # PUTs refused because the pod had changed (a patch followed)

    async def write(self, view: PodView, status: dict[str, Any], *, stale_version: str) -> str:
        """Write `status` (the full status body) for the pod `view` shows. `stale_version`: a
        resourceVersion known to be older than the stored pod (the view our last write was
        made from); a view still at it is written by patch, as a PUT from it would conflict.
        Returns the view's resourceVersion, which this write made stale. Raises KubeApiError:
        404 or `another_pod` (the pod is gone, or is another one of the same name), 5xx...)."""
        path = f"/api/v1/namespaces/{view.namespace}/pods/{view.name}/status"
        version = view.resource_version
        refused: KubeApiError | None = None
        if self.by_replace and version and version != stale_version:
            body = {**view.raw, "status": merge_patch(view.raw.get("status") or {}, status)}
            try:
                await self.api.replace(path, body, answer=False)
                self.replaced += 1
                return version
            except KubeApiError as exc:
                if exc.not_found or exc.status in (0, 429) or exc.status >= 500:
                    raise  # the patch would fare no better
                refused = exc
                if exc.conflict:
                    self.conflicts += 1
        patch = {"metadata": {"uid": view.uid}, "status": status}
        await self.api.patch(path, patch, kind="merge", answer=False)
        self.patched += 1
        if refused is not None and not refused.conflict:
            # The patch was allowed where the PUT was not: the role (or the API server) does
            # not take status replacements from this gateway. Said once; patches from now on.
            self.by_replace = False
            log.warning(
                "status of pod %s/%s: PUT refused (%s %s), merge patch accepted: pod statuses "
                "are written by merge patch from now on (deploy/rbac.yaml grants update on "
                "pods/status; apply it to let the gateway use the cheaper PUT)",
                view.namespace,
                view.name,
                refused.status,
                refused.reason,
            )
        return version
