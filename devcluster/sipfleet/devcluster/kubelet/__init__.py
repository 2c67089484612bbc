"""The local kubelet: runs the Pods bound to one Node as local processes.

Modules, one job each:

- ``api``: async Kubernetes API client (aiohttp, client certificate)
- ``node``: Node registration, status heartbeat and the Lease in kube-node-lease
- ``ipam``: a 127.0.0.x address per Pod
- ``images``: image -> local command mapping
- ``env``: container environment (downward API, Secrets, ConfigMaps), $(VAR)
  expansion and mount-path rewriting
- ``volumes``: Secret / ConfigMap / emptyDir / projected volumes as directories
- ``probes``: httpGet / tcpSocket / exec probes and their thresholds
- ``restart``: restart policy and back-off decisions
- ``container``: one container's process supervision
- ``status``: Pod status (phase, conditions, container statuses) from snapshots
- ``setup``: what a Pod needs before it starts (objects, tokens, files, plans)
- ``pod``: one Pod's lifecycle
- ``events``: Events about Pods (Scheduled, Started, Unhealthy, Killing, ...)
- ``server``: the HTTPS endpoint the API server proxies `kubectl logs` to
- ``kubelet``: the watch loop that binds Pods to the Node and runs their workers
"""
