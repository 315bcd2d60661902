"""The speaker's control plane: the `l2guard speaker` command, its reconcile loop and its health/status server.

It reads the cluster through the Kubernetes adapter (`l2guard.kube`), decides with the pure core (`l2core`) and
drives the data plane (`speaker`). It never opens raw sockets itself (only the data plane does), and it never imports
`kubernetes` (only the adapter does).
"""
