"""Operator settings: frozen dataclasses grouped by concern, every field typed, defaulted and documented.

Built once by __main__.py from CLI flags and MODELFLEET_OPERATOR_* environment variables (or by a
test directly) and passed down explicitly. Nothing here reads the environment or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PodClientSettings:
    call_timeout_s: float = 10.0
    """Deadline of one management call (RegisterModel gets the model load timeout on top)."""
    attempts: int = 3
    """Tries per call when the server answers with a transient reason (or the pod is unreachable)."""
    backoff_initial_s: float = 0.2
    """First sleep between tries; doubles per try (with ±20 % jitter)."""
    backoff_max_s: float = 2.0
    """Longest sleep between tries of one call."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest answer accepted (DescribeModel of many versions and workers stays far below)."""


@dataclass(frozen=True)
class ReconcileSettings:
    workers: int = 8
    """ModelDeployments reconciled at the same time (one object is never reconciled twice at once)."""
    resync_interval_s: float = 60.0
    """Every object is reconciled at least this often, to correct drift inside pods (which emits no
    Kubernetes events). An idle pass makes no API writes."""
    requeue_after_action_s: float = 0.05
    """Delay before the next pass once a pass changed something on a pod (registration, default)."""
    requeue_waiting_s: float = 2.0
    """Poll interval while waiting for something no event announces (a version's workers warming up)."""
    failure_backoff_initial_s: float = 5.0
    """First retry delay of a transient failure that outlived the call's own retries; doubles."""
    failure_backoff_max_s: float = 300.0
    """Longest retry delay of a repeatedly failing transient operation."""
    status_pod_cap: int = 10
    """Pods listed one by one in status.pods; the rest are counted in podsOmitted."""
    pod_call_concurrency: int = 16
    """Pods of one ModelDeployment talked to at the same time."""
    pod_unreachable_grace_s: float = 5.0
    """How long (and at least two passes) a Ready pod's management API must fail before the status
    says Degraded=PodUnreachable: a start-up race is not an outage."""
    stuck_pod_poll_s: float = 10.0
    """Re-read interval while a pod is not Ready: some causes (a failed mount) appear only as pod
    Events, which start no pass."""


@dataclass(frozen=True)
class FleetSettings:
    operator_namespace: str = "modelfleet-system"
    """Namespace of the operator's pods; the NetworkPolicy opens the management port to it only."""
    operator_pod_labels: tuple[tuple[str, str], ...] = (("app.kubernetes.io/name", "modelfleet-operator"),)
    """Labels of the operator's pods (NetworkPolicy source of management traffic)."""
    default_server_image: str = ""
    """Server image of a ModelDeployment that leaves spec.image out; empty = spec.image is required
    (a resource without one gets InvalidSpec)."""


@dataclass(frozen=True)
class LeaderSettings:
    enabled: bool = True
    """Run only while holding the Lease; a second replica waits and takes over when the first stops."""
    lease_name: str = "modelfleet-operator"
    """Name of the coordination.k8s.io/v1 Lease."""
    lease_namespace: str = "modelfleet-system"
    """Namespace of the Lease (normally the operator's own)."""
    identity: str = ""
    """This replica's holder identity; empty = hostname plus a random suffix."""
    lease_duration_s: float = 15.0
    """How long a Lease stays valid without renewal: the longest takeover time after a crash."""
    renew_interval_s: float = 2.0
    """How often the leader renews, and how often a follower retries."""
    renew_deadline_s: float = 10.0
    """A leader that could not renew for this long stops working (it may no longer be the leader)."""


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: str | None = None
    """Kubeconfig file; None = in-cluster service account, else $KUBECONFIG / ~/.kube/config."""
    context: str | None = None
    """Kubeconfig context; None = the file's current context."""
    server: str | None = None
    """API server URL without credentials (the local fleet's in-memory API); overrides the above."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty = every namespace."""
    request_timeout_s: float = 30.0
    """Timeout of one Kubernetes API request made by the reconciler."""


@dataclass(frozen=True)
class OperatorSettings:
    kube: KubeSettings = field(default_factory=KubeSettings)
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    pods: PodClientSettings = field(default_factory=PodClientSettings)
    fleet: FleetSettings = field(default_factory=FleetSettings)
    log_level: str = "INFO"
    """Python logging level of the operator."""
