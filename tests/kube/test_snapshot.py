"""The one-shot read of `explain --live` (l2guard.kube.snapshot) against the API double with the real client: every
kind listed once as the typed lists the loader reads, the Lease list's Date as the server's time, and the bounds
(pages per kind; a failure names the resource)."""

from __future__ import annotations

import re
import time

import pytest

from l2guard.kube import snapshot
from l2guard.kube.errors import Forbidden, KubeError, Unreachable
from tests.kube.conftest import client_for
from tests.kube.scripts import NODES, POOLS, SERVICES, pool_object, pools_page, scripts
from tests.webhook.apidouble import APIDouble, Reply, list_reply


def test_every_kind_is_listed_once_with_its_api_version_and_the_lease_list_gives_the_server_time() -> None:
    with APIDouble(scripts()) as double:
        api = client_for(double)
        with api:
            read = snapshot.read_cluster(api, metallb_namespace="metallb-system", namespace="l2guard-system")
    assert [(d["kind"], d["apiVersion"]) for d in read.documents] == [
        ("NodeList", "v1"),
        ("ServiceList", "v1"),
        ("EndpointSliceList", "discovery.k8s.io/v1"),
        ("IPAddressPoolList", "metallb.io/v1beta1"),
        ("L2AdvertisementList", "metallb.io/v1beta1"),
    ]
    assert [n["metadata"]["name"] for n in read.documents[0]["items"]] == ["cp-1", "worker-1", "worker-2"]
    assert [lease["metadata"]["name"] for lease in read.leases] == ["speaker-worker-1"]  # the captured one
    # The double's Date header comes from this machine's clock: a generous bound only.
    assert read.server_time is not None and abs(read.server_time - time.time()) < 60
    assert sorted({(path, watch) for path, watch, _, _ in double.log}) == sorted(
        (path, False) for path, watch in scripts() if not watch
    )


def test_a_kind_with_more_pages_than_the_bound_fails_naming_the_resource() -> None:
    replies = scripts()
    replies[(POOLS, False)] = [pools_page([pool_object("a", ["198.51.100.0/25"])], "next")]  # always one more
    with APIDouble(replies) as double:
        api = client_for(double)
        with api, pytest.raises(KubeError, match=rf"^list ipaddresspools: more than {500 * 100} objects$"):
            snapshot.read_cluster(api, metallb_namespace="metallb-system", namespace="l2guard-system")
    assert len([p for p, _, _, _ in double.log if p == POOLS]) == snapshot.MAX_PAGES


def test_a_failed_list_keeps_its_error_class_and_names_the_resource() -> None:
    replies = scripts()
    replies[(SERVICES, False)] = [Reply(status=403, body=b'{"kind":"Status","code":403,"message":"no"}')]
    with APIDouble(replies) as double:
        api = client_for(double)
        with api, pytest.raises(Forbidden, match=r"^list services: HTTP 403: no$"):
            snapshot.read_cluster(api, metallb_namespace="metallb-system", namespace="l2guard-system")


def test_a_hung_api_server_fails_the_read_within_its_timeout() -> None:
    replies = scripts()
    replies[(SERVICES, False)] = [Reply(body=b"{}", delay=30.0)]  # answers long after the read's 1 s
    with APIDouble(replies) as double:
        api = client_for(double)
        started = time.monotonic()
        with api, pytest.raises(Unreachable, match=r"^list services: "):
            snapshot.read_cluster(api, metallb_namespace="metallb-system", namespace="l2guard-system", timeout=1.0)
        assert time.monotonic() - started < 10  # a generous bound that catches a hang, not a timing target


def test_the_read_stops_once_the_answers_exceed_its_byte_budget() -> None:
    """The captured lists are about 15 KB in all, nodes 7.7 KB first: a 10 KB budget ends within the next lists,
    a 20 KB one holds them all."""
    replies = scripts()
    replies[(NODES, False)] = [list_reply("list-nodes.json")]  # the same answer to both reads
    with APIDouble(replies) as double:
        for budget, fits in ((10_000, False), (20_000, True)):
            api = client_for(double)
            with api:
                try:
                    snapshot.read_cluster(
                        api, metallb_namespace="metallb-system", namespace="l2guard-system", max_bytes=budget
                    )
                except KubeError as exc:
                    assert not fits and re.fullmatch(r"list \w+: larger than \d+ bytes", exc.reason), exc.reason
                else:
                    assert fits
