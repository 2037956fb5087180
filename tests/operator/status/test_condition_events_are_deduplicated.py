"""Events say what changed, once: one per transition (a pass whose flips share a reason posts one),
repeats counted on the same Event as Kubernetes' own series are, messages short. A pod's cause is
read from its Warning events through the API's field selector, and a pass that finds nothing new
writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from modelfleet.operator.conditions import Condition, notices
from modelfleet.operator.events import EventRecorder
from modelfleet.operator.kube import Kube
from modelfleet.operator.reconcile import Reconciler
from modelfleet.operator.settings import OperatorSettings

KEY = ("default", "demo")


def _was(*conditions: tuple[str, str, str, str]) -> list[dict[str, str]]:
    return [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]


def test_a_fresh_objects_false_conditions_are_not_news() -> None:
    decided = [
        Condition("Ready", False, "PodsNotReady", "0 of 2"),
        Condition("Progressing", True, "PodsStarting", "x"),
        Condition("Degraded", False, "AsExpected"),
    ]
    assert [(n.type, n.reason) for n in notices(None, decided)] == [("Normal", "PodsStarting")]


def test_flips_of_one_pass_with_one_reason_make_one_warning() -> None:
    before = _was(("Ready", "True", "AllPodsServing", ""), ("Degraded", "False", "AsExpected", ""))
    decided = [
        Condition("Ready", False, "InvalidSpec", "spec.image: required"),
        Condition("Degraded", True, "InvalidSpec", "spec.image: required"),
    ]
    assert [(n.type, n.reason, n.message) for n in notices(before, decided)] == [
        ("Warning", "InvalidSpec", "spec.image: required")
    ]


def test_degraded_staying_true_posts_only_for_a_new_cause() -> None:
    before = _was(("Degraded", "True", "ContainerCrashLooping", "p: exit 1"))
    assert notices(before, [Condition("Degraded", True, "ContainerCrashLooping", "p: exit 1")]) == []
    (moved,) = notices(before, [Condition("Degraded", True, "ImagePullFailed", "p: pull")])
    assert (moved.type, moved.reason) == ("Warning", "ImagePullFailed")
    (healed,) = notices(before, [Condition("Degraded", False, "AsExpected", "")])
    assert (healed.type, healed.message) == ("Normal", "Degraded is now False")


def test_ready_turning_false_warns_and_a_blocked_rollout_leaves_the_warning_to_degraded() -> None:
    before = _was(("Ready", "True", "AllPodsServing", ""), ("Progressing", "True", "RolloutInProgress", ""))
    found = notices(
        before,
        [
            Condition("Ready", False, "PodsNotReady", "1 of 2"),
            Condition("Progressing", False, "BlockedByFailedLoad", "tiny stays on 1.0"),
        ],
    )
    assert [(n.type, n.reason) for n in found] == [("Warning", "PodsNotReady"), ("Normal", "BlockedByFailedLoad")]


async def test_a_repeated_event_is_counted_on_the_first_one(kube: Kube, make_md: Callable[..., dict[str, Any]]) -> None:
    body = await kube.create(dict(make_md(replicas=0), metadata={"name": "demo", "namespace": "default"}))
    recorder = EventRecorder(kube)
    for _ in range(3):
        await recorder.post(body, type="Warning", reason="ModelLoadFailed", message="tiny 2.0: " + "y" * 400)
    await recorder.post(body, type="Warning", reason="ModelLoadFailed", message="tiny 3.0: gone")
    events = sorted(await kube.list_objects("Event", "default"), key=lambda e: e["count"])
    assert [(e["reason"], e["count"]) for e in events] == [("ModelLoadFailed", 1), ("ModelLoadFailed", 3)]
    counted = events[1]
    assert counted["series"]["count"] == 3 and counted["lastTimestamp"] >= counted["firstTimestamp"]
    assert len(counted["message"]) == 200 and counted["message"].endswith("…")
    assert counted["involvedObject"]["uid"] == body["metadata"]["uid"]


@pytest.fixture
async def reconciler(kube: Kube) -> AsyncIterator[Reconciler]:
    r = Reconciler(kube, OperatorSettings())
    yield r
    await r.close()


async def test_an_invalid_spec_posts_one_warning(
    kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await kube.create(dict(make_md(replicas=0), metadata={"name": "demo", "namespace": "default"}))
    await reconciler.reconcile(KEY)
    await kube.patch_merge("ModelDeployment", "default", "demo", {"spec": {"image": None}})  # the CRD admits it
    for _ in range(2):
        await reconciler.reconcile(KEY)
    warnings = [e for e in await kube.list_objects("Event", "default") if e["type"] == "Warning"]
    assert [(e["reason"], e["count"]) for e in warnings] == [("InvalidSpec", 1)]


async def test_a_failed_mount_event_reaches_degraded_and_an_unchanged_pass_writes_nothing(
    api: Any, kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    await kube.create(dict(make_md(replicas=1), metadata={"name": "demo", "namespace": "default"}))
    await reconciler.reconcile(KEY)
    deployment = await kube.get("Deployment", "default", "demo")
    assert deployment is not None
    template = deployment["spec"]["template"]
    # What a real kubelet shows while a volume cannot be mounted: ContainerCreating, and an Event.
    pod = await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "demo-5f7c-x2x9q", "namespace": "default", "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }
    )
    await kube.patch_merge(
        "Pod",
        "default",
        "demo-5f7c-x2x9q",
        {
            "status": {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "server",
                        "image": "i",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            }
        },
        subresource="status",
    )
    message = 'MountVolume.SetUp failed for volume "models" : persistentvolumeclaim "models" not found'
    for name, kind, uid in (("other.1", "Pod", "someone-else"), ("demo.1", "Pod", pod["metadata"]["uid"])):
        await kube.create(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": "default"},
                "involvedObject": {"kind": kind, "name": "x", "namespace": "default", "uid": uid},
                "type": "Warning",
                "reason": "FailedMount",
                "message": message if uid != "someone-else" else "no",
                "lastTimestamp": "2026-01-01T10:00:00Z",
            }
        )
    requeue = await reconciler.reconcile(KEY)
    assert requeue == OperatorSettings().reconcile.stuck_pod_poll_s  # an Event starts no pass: look again
    body = await kube.get("ModelDeployment", "default", "demo")
    assert body is not None
    degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "VolumeMountFailed")
    assert degraded["message"] == f"demo-5f7c-x2x9q: {message}"
    posted = [e for e in await kube.list_objects("Event", "default") if e["reason"] == "VolumeMountFailed"]
    assert [(e["type"], e["message"]) for e in posted] == [("Warning", degraded["message"])]

    api.audit.reset()
    await reconciler.reconcile(KEY)
    assert [r for r in api.audit.writes(user_agent="modelfleet-operator")] == []
