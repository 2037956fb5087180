"""The whole ModelFleet product on one machine, with no cluster.

`apiserver` serves an in-memory Kubernetes API over real HTTP; the controller and kubelet modules play
the controller-manager's and kubelet's parts (Deployments, pods as local processes, probes, Services).
Nothing here imports torch, modelfleet.server or modelfleet.operator: those run as child processes.
"""
