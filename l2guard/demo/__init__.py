"""`l2guard demo`: the whole story on one machine (command.py), its network namespaces (topology.py), its traffic
(web.py) and the AdmissionReviews it sends the webhook (review.py)."""
