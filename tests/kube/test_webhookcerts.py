"""The caBundle patch on the wire: applied by an independent JSON Patch implementation to the captured
ValidatingWebhookConfiguration, it gives the webhooks of the captured patched one; through the real client against
the API double, a configuration changed since it was read is refused (422, a failed `test`), not patched blindly."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import jsonpatch  # type: ignore[import-untyped]
import pytest

from l2guard.kube import webhookcerts as wc
from l2guard.kube.client import make_api_client
from l2guard.kube.errors import Invalid
from tests.kube.test_client import kubeconfig
from tests.webhook.apidouble import API, APIDouble

CAPTURED_GET = json.loads((API / "webhookconfig-get.json").read_text())
CAPTURED_PATCHED = json.loads((API / "webhookconfig-cabundle-jsonpatch.json").read_text())
BUNDLE = base64.b64decode(CAPTURED_PATCHED["webhooks"][0]["clientConfig"]["caBundle"])


def test_the_patch_turns_the_captured_configuration_into_the_captured_patched_one() -> None:
    ops = wc.ca_bundle_patch(CAPTURED_GET, BUNDLE)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "2079"}
    assert {"op": "test", "path": "/webhooks/0/name", "value": "ipaddresspools.l2guard.io"} in ops
    patched = jsonpatch.apply_patch(CAPTURED_GET, ops)
    assert patched["webhooks"] == CAPTURED_PATCHED["webhooks"]
    assert wc.ca_bundle_patch(patched, BUNDLE) == []  # nothing left to change
    assert wc.ca_bundles(patched) == [("ipaddresspools.l2guard.io", BUNDLE)]


def test_a_configuration_changed_since_it_was_read_is_refused(tmp_path: Path) -> None:
    obj = copy.deepcopy(CAPTURED_GET)
    for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
        obj["metadata"].pop(key)
    with APIDouble({}) as double:
        stored = double.store.put(obj)
        api = make_api_client(str(kubeconfig(tmp_path, double.url)))
        double.store.patch(
            wc.configuration_path(wc.VALIDATING, "l2guard-capture"), {"metadata": {"labels": {"a": "b"}}}
        )
        with pytest.raises(Invalid, match="HTTP 422"):
            wc.inject_ca_bundle(api, stored, BUNDLE, timeout=5)
        fresh = wc.read_configuration(api, wc.VALIDATING, "l2guard-capture", timeout=5)
        patched = wc.inject_ca_bundle(api, fresh, BUNDLE, timeout=5)
    assert patched is not None and wc.ca_bundles(patched) == [("ipaddresspools.l2guard.io", BUNDLE)]
    assert patched["metadata"]["labels"] == {"a": "b"}  # the other change survived
