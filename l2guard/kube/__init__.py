"""The Kubernetes adapter: the only package that imports the `kubernetes` client.

It does the API work (reads, writes, watches) and translates the client's errors into `l2guard.kube.errors`; it
decides nothing (who is alive, what to announce, what to report is the core's and the control plane's business).
"""
