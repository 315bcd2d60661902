"""The API double's watches as the real client sees them: a watch that ends cleanly leaves its connection usable,
as the API server does, so the pooled connection is reused without error (the adapter turns urllib3's retries off,
so a connection closed unannounced is a watch error); and a change pushed mid-test reaches every watcher once."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s

from tests.kube.scripts import NODES, scripts
from tests.webhook.apidouble import APIDouble, list_reply, watch_reply


def api(double: APIDouble) -> k8s.CoreV1Api:
    config = k8s.Configuration(host=double.url)
    config.retries = False  # as l2guard/kube/client.py builds it
    return k8s.CoreV1Api(k8s.ApiClient(config))


def watch_events(core: k8s.CoreV1Api, rv: str) -> list[dict[str, Any]]:
    resp = core.list_node(watch=True, resource_version=rv, _preload_content=False)
    try:
        return [json.loads(line) for line in resp.data.splitlines() if line.strip()]
    finally:
        resp.release_conn()


def test_after_a_watch_the_next_request_on_the_pooled_connection_succeeds() -> None:
    script = scripts()
    script[(NODES, False)] = [list_reply("list-nodes.json")]
    script[(NODES, True)] = [watch_reply(hold=0.0)]
    with APIDouble(script) as double:
        core = api(double)
        for _ in range(20):  # a watch, then a list on the pooled connection: never "Remote end closed ..."
            assert watch_events(core, "306") == []
            listed = core.list_node(_preload_content=False)
            assert json.loads(listed.data)["kind"] == "NodeList"
            listed.release_conn()


def test_a_pushed_change_reaches_each_watcher_once() -> None:
    script = scripts()
    script[(NODES, False)] = [list_reply("list-nodes.json")]
    script[(NODES, True)] = [watch_reply(hold=0.0)]
    nodes = json.loads(list_reply("list-nodes.json").body)["items"]
    labelled = nodes[1] | {"metadata": nodes[1]["metadata"] | {"resourceVersion": "310"}}
    with APIDouble(script) as double:
        double.push(NODES, "MODIFIED", labelled)
        first, second = api(double), api(double)
        for watcher in (first, second):
            seen = watch_events(watcher, "306")
            assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in seen] == [("MODIFIED", "310")]
            assert watch_events(watcher, "310") == []  # a watch from the change's version does not see it again
