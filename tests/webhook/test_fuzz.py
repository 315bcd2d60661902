"""Fuzzing the endpoints over real HTTPS with hypothesis: any bytes, any JSON, and captured reviews with any value
spliced in, plus the hostile reviews of issue 7. Never a 500, never a traceback; every 200 obeys the wire rules
(patches applied with jsonpatch).

The servers are `python -m webhook` processes (file mode, as the manifests run it but with the captured cluster)
whose address space is capped with RLIMIT_AS at 1 GiB above what they use once serving, so a review that makes the
webhook allocate without bound ends in MemoryError inside the process rather than swap, and must still be answered
(issue 7, item 2: under a memory cap the webhook once answered HTTP 500)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2core.model import EXCLUDE_LABEL
from l2core.policy import Mode
from webhook.app import MUTATE_NODE, VALIDATE_ADVERTISEMENT, VALIDATE_NODE, VALIDATE_POOL

from .conftest import API, PKI, captured, check_response
from .hostile import HOSTILE, slow_pool

ROOT = Path(__file__).resolve().parents[2]
PATHS = [MUTATE_NODE, VALIDATE_NODE, VALIDATE_POOL, VALIDATE_ADVERTISEMENT]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HEADROOM = 1 << 30  # bytes of address space above the serving process's own


def _vm_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


class CappedServer:
    """`python -m webhook` in a subprocess under RLIMIT_AS; `post` as on the in-process servers."""

    def __init__(self, pki: PKI, mode: Mode, directory: Path) -> None:
        state = directory / "state.json"
        items = [json.loads((API / f"{n}.json").read_text()) for n in _API_LISTS]
        state.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_")}
        env.update({"L2GUARD_CERT_FILE": str(pki.cert_file), "L2GUARD_KEY_FILE": str(pki.key_file)})
        self.log = directory / f"webhook-{mode.value}.log"
        cmd = [sys.executable, "-m", "webhook", "--host", "127.0.0.1", "--port", "0", "--health-port", "0"]
        cmd += ["--node-policy", mode.value, "--cluster-state", str(state), "--log-format", "json"]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        self.port = self._started_port()
        self.cap = _vm_size(self.proc.pid) + HEADROOM
        resource.prlimit(self.proc.pid, resource.RLIMIT_AS, (self.cap, self.cap))
        self.client = httpx.Client(verify=pki.client_context(), timeout=30)

    def _started_port(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            for line in self.log.read_text().splitlines():
                doc = json.loads(line)
                if doc.get("event") == "start":
                    return int(doc["port"])
            time.sleep(0.05)
        raise AssertionError(f"the webhook did not start: {self.log.read_text()}")

    def post(self, path: str, body: bytes) -> httpx.Response:
        return self.client.post(
            f"https://127.0.0.1:{self.port}{path}", content=body, headers={"content-type": "application/json"}
        )

    def stop(self) -> str:
        """SIGTERM, wait, and return what it logged. The process exits once the decisions still running on its
        workers finish (threads cannot be stopped): seconds after the hostile pools, so the bound is generous."""
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(60) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        return self.log.read_text()


_API_LISTS = ["list-nodes", "list-services", "list-endpointslices", "list-ipaddresspools", "list-l2advertisements"]


@pytest.fixture(scope="module")
def servers(pki: PKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Mode, CappedServer]]:
    directory = tmp_path_factory.mktemp("capped")
    running = {m: CappedServer(pki, m, directory) for m in (Mode.STRIP, Mode.DENY)}
    yield running
    for r in running.values():
        assert "Traceback" not in r.stop()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.text(st.characters(exclude_categories=[]), max_size=5),  # lone surrogates are valid JSON escapes
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def _check(resp_status: int, text: str, review: Any = None) -> None:
    assert resp_status in (200, 400), (resp_status, text)
    assert "Traceback" not in text and "Internal Server Error" not in text
    body = json.loads(text)
    if resp_status == 400:
        assert set(body) == {"error"} and "\n" not in body["error"]
    elif review is not None:
        check_response(review, body)


@FUZZ
@given(body=st.binary(max_size=2000), path=st.sampled_from(PATHS))
def test_any_bytes(servers: dict[Mode, CappedServer], body: bytes, path: str) -> None:
    resp = servers[Mode.STRIP].post(path, body)
    _check(resp.status_code, resp.text)


@FUZZ
@given(doc=json_values, path=st.sampled_from(PATHS))
def test_any_json(servers: dict[Mode, CappedServer], doc: Any, path: str) -> None:
    resp = servers[Mode.STRIP].post(path, json.dumps(doc).encode())
    _check(resp.status_code, resp.text)


REVIEWS = [
    "node-label-exclude-empty",
    "node-status-patch-adds-exclude",
    "node-create",
    "ipaddresspool-create",
    "ipaddresspool-update-merge-patch",
    "l2advertisement-create",
    "l2advertisement-delete",
]
SPOTS = [
    ("object",),
    ("oldObject",),
    ("object", "metadata"),
    ("object", "metadata", "labels"),
    ("object", "metadata", "labels", EXCLUDE_LABEL),
    ("object", "metadata", "annotations"),
    ("object", "spec"),
    ("object", "spec", "addresses"),
    ("object", "spec", "nodeSelectors"),
    ("object", "spec", "ipAddressPools"),
    ("oldObject", "metadata", "labels"),
    ("uid",),
    ("userInfo",),
    ("userInfo", "groups"),
    ("operation",),
    ("name",),
    ("object", "metadata", "name"),
    ("object", "metadata", "namespace"),
    ("dryRun",),
    ("kind",),
]


@FUZZ
@given(
    name=st.sampled_from(REVIEWS),
    spot=st.sampled_from(SPOTS),
    value=json_values,
    path=st.sampled_from(PATHS),
    mode=st.sampled_from([Mode.STRIP, Mode.DENY]),
)
def test_captured_reviews_with_any_value_spliced_in(
    servers: dict[Mode, CappedServer], name: str, spot: tuple[str, ...], value: Any, path: str, mode: Mode
) -> None:
    review = captured(name)
    target: Any = review["request"]
    for key in spot[:-1]:
        if not isinstance(target, dict) or not isinstance(target.get(key), dict):
            target = None
            break
        target = target[key]
    if isinstance(target, dict):
        target[spot[-1]] = value
    resp = servers[mode].post(path, json.dumps(review).encode())
    _check(resp.status_code, resp.text, review)


@pytest.mark.parametrize("mode", [Mode.STRIP, Mode.DENY])
@pytest.mark.parametrize("spot", [("uid",), ("object", "metadata", "labels", EXCLUDE_LABEL), ("userInfo", "username")])
def test_lone_surrogates_are_echoed_not_a_500(
    servers: dict[Mode, CappedServer], mode: Mode, spot: tuple[str, ...]
) -> None:
    """Found in review: `"\\ud800"` is a valid JSON escape but cannot be encoded as UTF-8 on the way back out."""
    review = captured("node-label-exclude-empty")
    target: Any = review["request"]
    for key in spot[:-1]:
        target = target[key]
    target[spot[-1]] = "x\ud800y"
    resp = servers[mode].post(MUTATE_NODE, json.dumps(review).encode())
    _check(resp.status_code, resp.text)
    assert resp.status_code == 200
    if spot == ("uid",):
        assert json.loads(resp.text)["response"]["uid"] == "x\ud800y"


HOSTILE_CASES: dict[str, Callable[[], dict[str, Any]]] = {**HOSTILE, "slow-pool": slow_pool}


@pytest.mark.parametrize("name", sorted(HOSTILE_CASES))
def test_hostile_reviews_under_the_memory_cap_are_answered(servers: dict[Mode, CappedServer], name: str) -> None:
    review = HOSTILE_CASES[name]()
    body = json.dumps(review).encode()
    path = VALIDATE_POOL if review["request"]["kind"]["kind"] == "IPAddressPool" else VALIDATE_ADVERTISEMENT
    for mode in (Mode.STRIP, Mode.DENY):
        for url in (path, f"{path}?timeout=1s", MUTATE_NODE):
            resp = servers[mode].post(url, body)
            _check(resp.status_code, resp.text, review)
            assert resp.status_code == 200


def test_a_review_near_the_body_limit_is_answered_under_the_memory_cap(servers: dict[Mode, CappedServer]) -> None:
    """4 MiB of short strings: the densest object a review can carry (each costs ~60 bytes once parsed)."""
    review = captured("node-label-exclude-empty")
    review["request"]["object"]["metadata"]["annotations"]["pad"] = ["x"] * 780_000  # 3.9 MB of JSON
    body = json.dumps(review).encode()
    assert 3 << 20 < len(body) <= 4 << 20
    for path in PATHS:
        resp = servers[Mode.DENY].post(path, body)
        _check(resp.status_code, resp.text, review)
        assert resp.status_code == 200
