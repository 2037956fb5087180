"""Why a pod does not serve, read from pod objects and events as real clusters record them (the
causes the local kubelet cannot produce are covered here; tests/operator/e2e covers the rest)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelfleet.operator.observed import PodRef
from modelfleet.operator.plan import make_plan
from modelfleet.operator.podcauses import MESSAGE_CAP, PodCause, cause_of, summarize
from modelfleet.operator.spec import parse_spec
from modelfleet.operator.status import Observation, build, decide


def _pod(
    name: str = "demo-7d4f-abcde",
    *,
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    memory: str | None = None,
    phase: str = "Pending",
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "server", "image": "ghcr.io/modelfleet/modelfleet-server:0.1.0"}
    if memory:
        container["resources"] = {"limits": {"memory": memory}}
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {"containers": [container]},
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []},
    }


def _server(*, state: dict[str, Any], last: dict[str, Any] | None = None, restarts: int = 0) -> dict[str, Any]:
    entry = {
        "name": "server",
        "image": "ghcr.io/modelfleet/modelfleet-server:0.1.0",
        "ready": False,
        "started": False,
        "restartCount": restarts,
        "state": state,
    }
    if last:
        entry["lastState"] = last
    return entry


UNSCHEDULABLE = _pod(
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
            "3 No preemption victims found for incoming pod.",
        }
    ]
)
CREATING = _pod(containers=[_server(state={"waiting": {"reason": "ContainerCreating"}})])
FAILED_MOUNT = {
    "type": "Warning",
    "reason": "FailedMount",
    "lastTimestamp": "2026-01-01T10:00:05Z",
    "involvedObject": {"kind": "Pod", "name": "demo-7d4f-abcde", "uid": "uid-demo-7d4f-abcde"},
    "message": 'MountVolume.SetUp failed for volume "models" : persistentvolumeclaim "models" not found',
}
PULL_BACKOFF = _pod(
    containers=[
        _server(
            state={
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": 'Back-off pulling image "ghcr.io/modelfleet/modelfleet-server:0.9.9"',
                }
            }
        )
    ]
)
ERR_IMAGE_PULL = _pod(
    containers=[
        _server(
            state={
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": (
                        'rpc error: code = NotFound desc = failed to pull and unpack image "ghcr.io/x:0.9.9": not found'
                    ),
                }
            }
        )
    ]
)
CRASH_LOOP = _pod(
    phase="Running",
    containers=[
        _server(
            state={
                "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=server"}
            },
            last={
                "terminated": {
                    "exitCode": 2,
                    "reason": "Error",
                    "message": "modelfleet-server: error: --model-store /models is not a directory",
                }
            },
            restarts=3,
        )
    ],
)
OOM = _pod(
    phase="Running",
    memory="2Gi",
    containers=[
        _server(
            state={
                "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container=server"}
            },
            last={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            restarts=1,
        )
    ],
)
START_ERROR = _pod(
    phase="Running",
    containers=[
        _server(
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            last={
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": (
                        'failed to create containerd task: exec: "modelfleet-server": '
                        "executable file not found in $PATH"
                    ),
                }
            },
            restarts=2,
        )
    ],
)
CONFIG_ERROR = _pod(
    containers=[
        _server(
            state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "demo-tokens" not found'}}
        )
    ]
)


def test_an_unschedulable_pod_gives_the_schedulers_reason() -> None:
    cause = cause_of(UNSCHEDULABLE)
    assert cause is not None and (cause.pod, cause.reason) == ("demo-7d4f-abcde", "PodUnschedulable")
    assert cause.detail.startswith("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")


def test_a_failed_mount_is_read_from_the_pods_events_when_its_status_only_says_creating() -> None:
    assert cause_of(CREATING) is None  # a pod starting normally looks exactly like this
    cause = cause_of(CREATING, [FAILED_MOUNT])
    assert cause == PodCause("demo-7d4f-abcde", "VolumeMountFailed", FAILED_MOUNT["message"])


def test_image_pull_failures_name_the_waiting_reason_and_message() -> None:
    backoff, err = cause_of(PULL_BACKOFF), cause_of(ERR_IMAGE_PULL)
    assert backoff is not None and backoff.reason == "ImagePullFailed"
    assert (
        backoff.detail
        == 'container server: ImagePullBackOff: Back-off pulling image "ghcr.io/modelfleet/modelfleet-server:0.9.9"'
    )
    assert err is not None and err.reason == "ImagePullFailed" and "not found" in err.detail


def test_a_crash_loop_gives_the_exit_code_and_the_last_termination_message() -> None:
    cause = cause_of(CRASH_LOOP)
    assert cause is not None and cause.reason == "ContainerCrashLooping"
    assert cause.detail == (
        "container server keeps exiting, last with code 2 (Error): "
        "modelfleet-server: error: --model-store /models is not a directory"
    )


def test_an_oom_kill_names_the_memory_limit() -> None:
    cause = cause_of(OOM)
    assert cause is not None and cause.reason == "ContainerOOMKilled"
    assert "out of memory (limit 2Gi)" in cause.detail


def test_a_container_that_cannot_start_and_a_config_error_are_told_apart_from_crashes() -> None:
    start, config = cause_of(START_ERROR), cause_of(CONFIG_ERROR)
    assert start is not None and start.reason == "ContainerCannotStart" and "executable file not found" in start.detail
    assert config is not None and config.reason == "ContainerConfigError"
    assert config.detail == 'container server: CreateContainerConfigError: secret "demo-tokens" not found'


def test_the_summary_names_the_most_telling_cause_counts_the_same_elsewhere_and_stays_short() -> None:
    long = PodCause("p-b", "ContainerCrashLooping", "x" * 500)
    causes = [long, PodCause("p-c", "ImagePullFailed", "pull"), PodCause("p-a", "ImagePullFailed", "pull")]
    reason, message = summarize(causes) or ("", "")
    assert (reason, message) == ("ImagePullFailed", "p-a (and 1 more pods): pull")
    _, cut = summarize([long]) or ("", "")
    assert len(cut) == MESSAGE_CAP and cut.endswith("…")


def test_degraded_names_the_pod_and_its_cause_instead_of_pods_starting(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(replicas=1))
    ref = PodRef("demo-7d4f-abcde", "uid-demo-7d4f-abcde", "", ready=False)
    plan = make_plan(spec, [], failures={}, previous_document=None, now=0.0)
    cause = cause_of(CREATING, [FAILED_MOUNT])
    assert cause is not None
    seen = Observation(live_pods=[ref], observed=[], failures={}, causes=[cause])
    by = {c.type: c for c in decide(spec, plan, seen=seen)}
    assert (by["Degraded"].status, by["Degraded"].reason) == (True, "VolumeMountFailed")
    assert by["Degraded"].message == f"demo-7d4f-abcde: {FAILED_MOUNT['message']}"
    assert (by["Ready"].status, by["Progressing"].reason) == (False, "PodsStarting")
    (entry,) = build(spec, plan, seen=seen, selector="s", pod_cap=10)["pods"]
    assert entry["lastError"] == f"VolumeMountFailed: {FAILED_MOUNT['message']}"
