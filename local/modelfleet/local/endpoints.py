"""The EndpointSlice and Endpoints controllers' part: each Service with a selector lists its pods.

For every Service with a selector (headless ones included: that is how clients find the pods behind
`<name>-headless`), writes an EndpointSlice (discovery.k8s.io/v1, `<service>-local`, labelled
kubernetes.io/service-name) and an Endpoints object with each matching pod's address, ready or not,
and the Service's ports resolved against the pod's container ports. Terminating pods are listed as
not ready and terminating. Writes only when the content changed. Runs in the local fleet's loop.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelfleet.local import podstatus
from modelfleet.local.apitypes import JSON, ApiError, ResourceType
from modelfleet.local.localclient import LocalClient
from modelfleet.local.probes import resolve_port
from modelfleet.local.reconciler import Controller
from modelfleet.local.selectors import selector_object_matches

Key = tuple[str, str]


def _ports(service: JSON, pod: JSON) -> list[JSON]:
    ports = []
    for port in (service.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        number = None
        for container in (pod.get("spec") or {}).get("containers") or []:
            try:
                number = resolve_port(target, container)
                break
            except ValueError:
                continue
        if number is not None:
            entry: JSON = {"port": number, "protocol": port.get("protocol", "TCP")}
            for field in ("name", "appProtocol"):
                if port.get(field):
                    entry[field] = port[field]
            ports.append(entry)
    return ports


class EndpointsController(Controller[Key]):
    name = "endpoints-controller"

    def __init__(self, client: LocalClient) -> None:
        super().__init__(client)
        self.services = client.type("", "services")
        self.pods = client.type("", "pods")
        self.endpoints = client.type("", "endpoints")
        self.slices = client.type("discovery.k8s.io", "endpointslices")
        self.watch(self.services, lambda s: [(s["metadata"]["namespace"], s["metadata"]["name"])])
        self.watch(self.pods, self._services_of)

    def _services_of(self, pod: JSON) -> Iterable[Key]:
        namespace = pod["metadata"]["namespace"]
        labels = pod["metadata"].get("labels") or {}
        for service in self.client.list(self.services, namespace):
            selector = (service.get("spec") or {}).get("selector")
            if selector and selector_object_matches({"matchLabels": selector}, labels):
                yield (namespace, service["metadata"]["name"])

    def reconcile(self, key: Key) -> float | None:
        namespace, name = key
        service = self.client.get(self.services, namespace, name)
        selector = ((service or {}).get("spec") or {}).get("selector")
        if service is None or not selector:
            return None  # deleted Services take their objects along through owner references
        pods = [
            pod
            for pod in self.client.list(self.pods, namespace)
            if selector_object_matches({"matchLabels": selector}, pod["metadata"].get("labels") or {})
            and (pod.get("status") or {}).get("podIP")
        ]
        owner = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "name": name,
                "uid": service["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        endpoints: list[JSON] = []
        ready: list[JSON] = []
        not_ready: list[JSON] = []
        ports: list[JSON] = []
        for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
            is_ready = podstatus.is_ready(pod) and not podstatus.is_terminating(pod)
            target = {
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": namespace,
                "uid": pod["metadata"]["uid"],
            }
            endpoints.append(
                {
                    "addresses": [pod["status"]["podIP"]],
                    "targetRef": target,
                    "nodeName": (pod.get("spec") or {}).get("nodeName", ""),
                    "conditions": {
                        "ready": is_ready,
                        "serving": podstatus.is_ready(pod),
                        "terminating": podstatus.is_terminating(pod),
                    },
                }
            )
            (ready if is_ready else not_ready).append({"ip": pod["status"]["podIP"], "targetRef": target})
            ports = ports or _ports(service, pod)
        self._write(
            self.slices,
            namespace,
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "addressType": "IPv4",
                "metadata": {
                    "name": f"{name}-local",
                    "namespace": namespace,
                    "ownerReferences": owner,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                },
                "endpoints": endpoints,
                "ports": ports,
            },
        )
        subset: JSON = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if subset:
            subset["ports"] = [{k: v for k, v in p.items() if k != "appProtocol"} for p in ports]
        self._write(
            self.endpoints,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace, "ownerReferences": owner},
                "subsets": [subset] if subset else [],
            },
        )
        return None

    def _write(self, rtype: ResourceType, namespace: str, body: JSON) -> None:
        current = self.client.get(rtype, namespace, body["metadata"]["name"])
        if current is None:
            try:
                self.client.create(rtype, namespace, body)
            except ApiError as exc:
                if exc.code != 409:
                    raise
            return
        changes = {k: v for k, v in body.items() if k not in ("metadata", "apiVersion", "kind") and current.get(k) != v}
        if changes:
            self.client.patch(rtype, namespace, body["metadata"]["name"], changes)
