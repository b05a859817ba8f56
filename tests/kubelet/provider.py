"""An in-memory KubeletProvider for tests only (the runtime layer is the real one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.kubelet import ExecFailed, ExecOutcome, ExecOutputSink, NodeStats
from gateway.logs import LogSource


def pod_json(namespace: str, name: str, node: str, *containers: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": namespace, "name": name, "uid": f"uid-{name}"},
        "spec": {"nodeName": node, "containers": [{"name": c, "image": c} for c in containers]},
        "status": {"phase": "Running"},
    }


@dataclass(frozen=True)
class ScriptedExec:
    """What a scripted exec writes (stdout, then stderr) and how it ends."""

    exit_code: int
    stdout: bytes = b""
    stderr: bytes = b""
    outcome: ExecOutcome | None = None  # default: just the exit code


class InMemoryProvider:
    def __init__(self, nodes: Sequence[str]) -> None:
        self.nodes = list(nodes)
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str], LogSource] = {}
        self.node_stats: list[NodeStats] = []
        # What exec answers, per (namespace, pod, container): an outcome or a failure message.
        self.exec_answers: dict[tuple[str, str, str], ScriptedExec | str] = {}
        self.exec_calls: list[tuple[str, str, str, tuple[str, ...]]] = []
        self.problems: dict[str, str] = {}  # node -> why it is unhealthy
        self.node_logs: dict[str, list[Path]] = {}  # node -> its /logs/ files

    def add_pod(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.pods[meta["namespace"], meta["name"]] = pod

    def node_names(self) -> Sequence[str]:
        return self.nodes

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.pods.get((namespace, name))

    async def list_pods(self) -> list[dict[str, Any]]:
        return list(self.pods.values())

    async def find_container_log(
        self, namespace: str, pod: str, container: str
    ) -> LogSource | None:
        return self.logs.get((namespace, pod, container))

    async def stats(self) -> Sequence[NodeStats]:
        return self.node_stats

    def node_problem(self, node: str) -> str:
        return self.problems.get(node, "")

    def node_log_files(self, node: str) -> Sequence[Path]:
        return self.node_logs.get(node, [])

    async def running_pods(self) -> list[dict[str, Any]]:
        result = []
        for pod in self.pods.values():
            if pod.get("status", {}).get("phase") != "Running":
                continue
            meta = pod["metadata"]
            result.append(
                {
                    "metadata": {k: meta[k] for k in ("name", "namespace", "uid")},
                    "spec": {
                        "nodeName": pod["spec"]["nodeName"],
                        "containers": [
                            {"name": c["name"], "image": c["image"]}
                            for c in pod["spec"]["containers"]
                        ],
                    },
                    "status": {},
                }
            )
        return result

    async def exec(
        self,
        namespace: str,
        pod: str,
        container: str,
        argv: Sequence[str],
        output: ExecOutputSink,
    ) -> ExecOutcome:
        self.exec_calls.append((namespace, pod, container, tuple(argv)))
        answer = self.exec_answers.get((namespace, pod, container), "no answer configured")
        if isinstance(answer, str):
            raise ExecFailed(answer)
        if answer.stdout:
            await output("stdout", answer.stdout)
        if answer.stderr:
            await output("stderr", answer.stderr)
        return answer.outcome or ExecOutcome(answer.exit_code)
