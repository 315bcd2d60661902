"""l2core: the pure layer-2 core of l2guard.

Every L2 decision lives here and nowhere else: parsing Kubernetes objects into small frozen dataclasses, label
selectors, address pools, node eligibility with reasons, the MetalLB-compatible election, the planner and the
configuration validator. The webhook, the speaker and the `explain` command all call these same functions, so the
speaker's verdict, the webhook's warning and the operator's diagnosis can never disagree.

This package must not do I/O, log, read the clock or the environment, or import anything outside the standard
library. `tests/test_import_contracts.py` enforces that.
"""
