"""The HTTPS kubelet API the API server calls for logs, pod lists and stats.

Talks only to a `KubeletProvider` and to `gateway.logs` (enforced by import-linter).
"""

from gateway.kubelet.authn import (
    Authenticator,
    ChainAuthenticator,
    TokenReviewAuthenticator,
    UserInfo,
    X509Authenticator,
)
from gateway.kubelet.authz import (
    AlwaysAllowAuthorizer,
    Authorizer,
    Decision,
    NodeAction,
    SubjectAccessReviewAuthorizer,
)
from gateway.kubelet.errors import ExecFailed, NoFreePort
from gateway.kubelet.provider import ExecOutcome, ExecOutputSink, KubeletProvider
from gateway.kubelet.server import KubeletServer, PortRange, ServerLimits, create_app
from gateway.kubelet.stats import ContainerStats, NodeStats, PodStats
from gateway.kubelet.tls import server_ssl_context

__all__ = [
    "AlwaysAllowAuthorizer",
    "Authenticator",
    "Authorizer",
    "ChainAuthenticator",
    "ContainerStats",
    "Decision",
    "ExecFailed",
    "ExecOutcome",
    "ExecOutputSink",
    "KubeletProvider",
    "KubeletServer",
    "NoFreePort",
    "NodeAction",
    "NodeStats",
    "PodStats",
    "PortRange",
    "ServerLimits",
    "SubjectAccessReviewAuthorizer",
    "TokenReviewAuthenticator",
    "UserInfo",
    "X509Authenticator",
    "create_app",
    "server_ssl_context",
]
