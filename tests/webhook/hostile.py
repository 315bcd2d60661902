"""The hostile admission reviews of issue 7 item 2, built from the captured ones (shared by tests/webhook and
bench/bench_hostile.py): pools and advertisements sized to make pairwise or quadratic checks slow, and a review
padded past a megabyte. Documentation ranges only, except the issue's own `10.0.0.0/8` (never put on a wire)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ADMISSION = Path(__file__).resolve().parents[1] / "data" / "admission"


def _captured(name: str) -> dict[str, Any]:
    wrapper = json.loads((ADMISSION / f"{name}.json").read_text())
    review: dict[str, Any] = copy.deepcopy(wrapper["review"])
    return review


def pool_review(addresses: list[str], *, uid: str = "hostile-pool") -> dict[str, Any]:
    review = _captured("ipaddresspool-create")
    review["request"]["uid"] = uid
    obj = review["request"]["object"]
    obj["metadata"].pop("managedFields", None)
    obj["metadata"].pop("annotations", None)
    obj["spec"]["addresses"] = addresses
    return review


def advertisement_review(spec: dict[str, Any], *, uid: str = "hostile-ad") -> dict[str, Any]:
    review = _captured("l2advertisement-create")
    review["request"]["uid"] = uid
    obj = review["request"]["object"]
    obj["metadata"].pop("managedFields", None)
    obj["metadata"].pop("annotations", None)
    obj["spec"] = spec
    return review


def repeated_slash8() -> dict[str, Any]:
    """The issue's 16 KB pool: a thousand repeated `10.0.0.0/8` entries (19 s before the sweeps)."""
    return pool_review(["10.0.0.0/8"] * 1000, uid="repeated-slash8")


def many_slash32() -> dict[str, Any]:
    """8,000 distinct /32 entries (7 s before)."""
    return pool_review([f"198.51.{i // 256}.{i % 256}/32" for i in range(8000)], uid="many-slash32")


def many_pool_names() -> dict[str, Any]:
    """An L2Advertisement naming 20,000 pools (3-4 s before)."""
    return advertisement_review({"ipAddressPools": [f"pool-{i}" for i in range(20000)]}, uid="many-pool-names")


def many_selector_values() -> dict[str, Any]:
    """An L2Advertisement whose node selector lists 20,000 values (3-4 s before)."""
    expr = {"key": "zone", "operator": "In", "values": [f"zone-{i}" for i in range(20000)]}
    return advertisement_review({"nodeSelectors": [{"matchExpressions": [expr]}]}, uid="many-selector-values")


def megabyte_review() -> dict[str, Any]:
    """A 1.2 MB pool review (20 s and 1 GB before): 40,000 ranges of documentation addresses, every one distinct."""
    addresses = [f"2001:db8:{i // 65536:x}:{i % 65536:x}::/64" for i in range(40000)]
    return pool_review(addresses, uid="megabyte-review")


HOSTILE = {
    "repeated-slash8": repeated_slash8,
    "many-slash32": many_slash32,
    "many-pool-names": many_pool_names,
    "many-selector-values": many_selector_values,
    "megabyte-review": megabyte_review,
}


def slow_pool(entries: int = 110_000, *, uid: str = "slow-pool") -> dict[str, Any]:
    """A valid pool near the 4 MiB body limit: seconds of honest parsing work, for tests of the time budget. The
    addresses embed IPv4 in IPv6 (`2001:db8:0:1::192.0.2.1/128`), a form MetalLB accepts that takes the slow path of
    the address reader (the standard `ipaddress` module), so the work stays seconds on a fast machine too."""
    addresses = [f"2001:db8:{i // 65536:x}:{i % 65536:x}::192.0.2.1/128" for i in range(entries)]
    return pool_review(addresses, uid=uid)
