"""A lone surrogate is valid JSON (`"\\udfff"`) and a Node name the API server stores as Go decodes it: the
webhook's file mode starts on a cluster state that holds such a Node (an election candidate too), and Node reviews
about it and about its neighbours are answered 200 with printable warnings (issue 7, item 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from webhook.app import MUTATE_NODE, VALIDATE_NODE

from .conftest import PKI, api_documents, captured, check_response
from .webhook_process import WebhookProcess

LONE = "\udfff"


def _state_with_a_lone_surrogate_node(tmp_path: Path) -> Path:
    nodes, services, slices, pools, ads = api_documents()
    assert isinstance(nodes, dict) and isinstance(slices, dict)
    worker = next(n for n in nodes["items"] if n["metadata"]["name"] == "worker-2")
    node = json.loads(json.dumps(worker))
    node["metadata"]["name"] = LONE
    node["metadata"]["labels"] = {"kubernetes.io/hostname": LONE, "kubernetes.io/os": "linux"}
    nodes["items"].append(node)
    # A ready endpoint of default/web on it, so that it is a candidate in the election of 192.0.2.100.
    endpoint = {"addresses": ["10.244.3.9"], "conditions": {"ready": True}, "nodeName": LONE}
    slices["items"][0]["endpoints"].append(endpoint)
    path = tmp_path / "state.json"
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [nodes, services, slices, pools, ads]})
    assert "\\udfff" in text  # the JSON escape, as kubectl would print it
    path.write_text(text)
    return path


def _about(node: str) -> dict[str, Any]:
    """The captured review that adds the exclude label to worker-1, about `node` instead."""
    review = captured("node-label-exclude-empty")
    request = review["request"]
    request["name"] = node
    for key in ("object", "oldObject"):
        request[key]["metadata"]["name"] = node
        request[key]["metadata"]["labels"]["kubernetes.io/hostname"] = node
    return review


def test_file_mode_starts_with_a_lone_surrogate_node_and_answers_reviews_about_it(tmp_path: Path, pki: PKI) -> None:
    state = _state_with_a_lone_surrogate_node(tmp_path)
    argv = [f"--cert-file={pki.cert_file}", f"--key-file={pki.key_file}", f"--cluster-state={state}"]
    with WebhookProcess(argv) as proc:
        assert proc.health.get("/readyz").status_code == 200
        with httpx.Client(verify=pki.client_context(), timeout=10) as client:
            for path in (MUTATE_NODE, VALIDATE_NODE):
                for node in (LONE, "worker-1"):
                    review = _about(node)
                    body_bytes = json.dumps(review).encode()  # ASCII: the surrogate travels as the escape \udfff
                    resp = client.post(
                        f"{proc.url}{path}?timeout=3s",
                        content=body_bytes,
                        headers={"content-type": "application/json"},
                    )
                    assert resp.status_code == 200, (path, node, resp.text)
                    body = resp.json()
                    check_response(review, body)  # warnings printable: the surrogate is escaped, not echoed raw
                    assert body["response"]["allowed"] is True  # the default policy warns
        assert proc.stop() == 0, proc.lines
    assert not [d for d in proc.logs() if d.get("level") in ("error", "critical")], proc.lines
    assert not [line for line in proc.lines if "Traceback" in line or "Logging error" in line], proc.lines
