"""Suite-wide settings. CI machines are shared and slow: no per-example deadline, no "too slow" health check."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("l2guard", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "l2guard"))
