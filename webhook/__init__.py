"""The l2guard admission webhook: exclude-label policy on Nodes and MetalLB configuration validation over HTTPS.

Layout: `review` (wire format, pure), `messages` (texts, pure), `handlers` (decisions on a snapshot, pure),
`view` (the cluster snapshot), `kube` (the only kubernetes-client module), `tls`, `metrics`, `logs`, `app` (the only
fastapi module), `server` (uvicorn), `settings` and `cli` (the edge).
"""
