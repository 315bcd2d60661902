"""What `kubectl label node NAME node.kubernetes.io/exclude-from-external-load-balancers=` sends the webhook, and
what the API server does with the answer: the AdmissionReview (built from the shape captured from a real
kube-apiserver v1.36, data/node-label-exclude.json), the HTTPS POST (verified with the demo's CA), the warnings as
kubectl prints them, and the JSON Patch (RFC 6902) applied as the API server applies a mutating webhook's patch.

It must not decide anything itself: the verdicts are the webhook's.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import ssl
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import Any

from l2core.model import EXCLUDE_LABEL

MUTATE_NODE = "/mutate-v1-node?timeout=10s"  # the path of the manifests' MutatingWebhookConfiguration
TIMEOUT = 10.0
MAX_ANSWER_BYTES = 1024 * 1024


class ReviewError(Exception):
    """The webhook could not be asked, or answered something that is not an AdmissionReview; one line."""


@dataclass(frozen=True)
class Answer:
    allowed: bool
    warnings: list[str]
    patch: list[dict[str, Any]]  # empty without one
    seconds: float


def label_review(node: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview of `kubectl label` adding the exclude label (empty value) to the Node object `node`."""
    captured = json.loads(resources.files("l2guard.demo").joinpath("data/node-label-exclude.json").read_text())
    review: dict[str, Any] = captured["review"]
    request = review["request"]
    old = copy.deepcopy(request["oldObject"])
    old["metadata"]["name"] = node["metadata"]["name"]
    old["metadata"]["labels"] = dict(node["metadata"].get("labels", {}))
    old["status"]["addresses"] = node["status"]["addresses"]
    new = copy.deepcopy(old)
    new["metadata"]["labels"][EXCLUDE_LABEL] = ""
    request.update(uid=str(uuid.uuid4()), name=old["metadata"]["name"], object=new, oldObject=old)
    return review


def post(review: dict[str, Any], *, port: int, ca_file: str) -> Answer:
    """POST `review` to the webhook on 127.0.0.1:`port` over HTTPS, trusting only `ca_file`."""
    context = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT, context=context)
    start = time.monotonic()
    try:
        conn.request("POST", MUTATE_NODE, json.dumps(review), {"Content-Type": "application/json"})
        reply = conn.getresponse()
        body = reply.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as exc:
        raise ReviewError(f"webhook on 127.0.0.1:{port}: {exc}") from exc
    finally:
        conn.close()
    seconds = time.monotonic() - start
    if reply.status != 200:
        raise ReviewError(f"webhook on 127.0.0.1:{port}: HTTP {reply.status}: {body[:200]!r}")
    try:
        response = json.loads(body)["response"]
        patch = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
        return Answer(bool(response["allowed"]), list(response.get("warnings", [])), patch, seconds)
    except (ValueError, KeyError, TypeError) as exc:
        raise ReviewError(f"webhook on 127.0.0.1:{port}: not an AdmissionReview answer: {exc}") from exc


def kubectl_lines(answer: Answer, node: str) -> list[str]:
    """What kubectl prints for this answer: each warning as `Warning: ...` (the API server passes them on as
    Warning headers, kubectl writes them to stderr), then its own line."""
    lines = [f"Warning: {w}" for w in answer.warnings]
    lines.append(f"node/{node} labeled" if answer.allowed else f"Error from server: admission webhook denied {node}")
    return lines


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")  # RFC 6901 section 4


def apply_patch(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """`obj` with the JSON Patch applied (the ops l2guard's webhook sends: test, remove, add, replace on object
    members). A failed `test` or a missing path raises ReviewError: the API server rejects the request then."""
    out = copy.deepcopy(obj)
    for op in patch:
        *parents, last = [_unescape(t) for t in op["path"].split("/")[1:]]
        target: Any = out
        for token in parents:
            if not isinstance(target, dict) or token not in target:
                raise ReviewError(f"patch path {op['path']} does not exist")
            target = target[token]
        if not isinstance(target, dict):
            raise ReviewError(f"patch path {op['path']} is not in an object")
        kind = op["op"]
        if kind == "test" and target.get(last, object()) != op["value"]:
            raise ReviewError(f"patch test failed at {op['path']}")
        if kind == "remove":
            if last not in target:
                raise ReviewError(f"patch path {op['path']} does not exist")
            del target[last]
        elif kind in ("add", "replace"):
            target[last] = op["value"]
        elif kind != "test":
            raise ReviewError(f"patch op {kind} is not one the webhook sends")
    return out
