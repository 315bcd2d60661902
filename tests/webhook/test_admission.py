"""The captured AdmissionReviews posted to a real HTTPS server, in every node-policy mode, and the pool endpoints.

Every response goes through `check_response` (wire rules, warning constraints, patches applied with jsonpatch)."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from l2core.model import EXCLUDE_LABEL, EligibilitySettings
from l2core.parse import build_cluster
from l2core.plan import diff, plan
from l2core.policy import ALLOW_EXCLUDE_ANNOTATION, Mode, StripScope
from l2guard.view import ClusterView
from tests.builders import advertisement, endpoints, node, pool, service
from webhook import messages
from webhook.app import MUTATE_NODE, VALIDATE_ADVERTISEMENT, VALIDATE_NODE, VALIDATE_POOL
from webhook.settings import WebhookSettings, parse_selector_text

from .conftest import api_documents, captured, check_strip_patch

WARN = WebhookSettings(node_policy=Mode.WARN)
STRIP = WebhookSettings(node_policy=Mode.STRIP)
DENY = WebhookSettings(node_policy=Mode.DENY)
UNRELATED = ["node-label-unrelated", "node-annotate", "node-cordon", "node-create", "node-replace-removes-exclude"]


def _response(body: dict[str, Any]) -> dict[str, Any]:
    resp: dict[str, Any] = body["response"]
    return resp


def _node_review(
    name: str, *, labels: dict[str, str] | None = None, old: dict[str, str] | None = None
) -> dict[str, Any]:
    """A derived variant of the captured `kubectl label` review for another node name and labels."""
    review = captured("node-label-exclude-empty")
    req = review["request"]
    req["name"] = name
    for key, lab in (("object", labels), ("oldObject", old)):
        req[key]["metadata"]["name"] = name
        req[key]["metadata"]["labels"] = {"kubernetes.io/hostname": name, **(lab or {})}
    return review


# ----- warn mode on the captured cluster ------------------------------------------------------------------------


def test_label_added_warns_with_the_move_the_planner_predicts(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    resp = _response(r.review(MUTATE_NODE, captured("node-label-exclude-empty")))
    assert resp["allowed"] is True and "patch" not in resp
    assert resp["warnings"] == [
        "node worker-1 excluded from LoadBalancer announcements: 1 service moves to another node",
        "LoadBalancer 192.0.2.100 (default/web) moves from worker-1 to worker-2",
    ]
    # The planner agrees: worker-1 owns default/web now, worker-2 after.
    cluster = build_cluster(api_documents()).cluster
    before = plan(cluster, EligibilitySettings())
    assert before.services["default/web"].announcer == "worker-1"


def test_label_changed_value_says_the_node_was_already_excluded(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    resp = _response(r.review(MUTATE_NODE, captured("node-label-exclude-true-overwrite")))
    assert resp["warnings"] == ["node worker-1 was already excluded by the label; this change moves no LoadBalancer IP"]


def test_label_removed_never_warns(serve) -> None:  # type: ignore[no-untyped-def]
    for settings in (WARN, STRIP, DENY):
        r = serve(settings, documents=api_documents())
        for path in (MUTATE_NODE, VALIDATE_NODE):
            assert _response(r.review(path, captured("node-unlabel-exclude"))) == {
                "uid": "031c801c-b097-4f36-a2c2-754d23284df5",
                "allowed": True,
            }


def test_unrelated_updates_take_the_fast_path(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(STRIP, documents=api_documents())
    for name in UNRELATED:
        review = captured(name)
        assert _response(r.review(MUTATE_NODE, review)) == {"uid": review["request"]["uid"], "allowed": True}, name


def test_status_subresource_path_triggers_too(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = captured("node-status-patch-adds-exclude")
    assert review["request"]["subResource"] == "status"
    resp = _response(r.review(MUTATE_NODE, review))
    assert (
        resp["allowed"]
        and resp["warnings"][1] == "LoadBalancer 192.0.2.100 (default/web) moves from worker-1 to worker-2"
    )


def test_dry_run_gets_the_same_answer(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    dry = captured("node-label-exclude-karpenter-dryrun")
    assert dry["request"]["dryRun"] is True
    wet = copy.deepcopy(dry)
    wet["request"]["dryRun"] = False
    assert r.review(MUTATE_NODE, dry) == r.review(MUTATE_NODE, wet)


def test_unsynced_view_falls_back_to_a_generic_warning(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, view=ClusterView(EligibilitySettings()))
    resp = _response(r.review(MUTATE_NODE, captured("node-label-exclude-empty")))
    assert resp["warnings"] == [
        "node worker-1 will stop announcing LoadBalancer IPs; impact unknown (cluster view not synced yet)"
    ]
    assert r.health.get("/readyz").status_code == 503


# ----- impact checked against the planner -----------------------------------------------------------------------


def _expected_lines(docs: list[dict[str, Any]], changed: dict[str, Any], settings: EligibilitySettings) -> list[str]:
    c = build_cluster(docs).cluster
    after = build_cluster([*docs, changed]).cluster
    moves = diff(plan(c, settings), plan(after, settings)).moves
    losing = [m for m in moves if m.after is None]
    moving = [m for m in moves if m.after is not None]
    return [messages.move_text(m) for m in [*losing, *moving][:3]]


def test_single_node_cluster_warns_that_the_ip_has_no_announcer(serve) -> None:  # type: ignore[no-untyped-def]
    docs = [
        node("cp-1"),
        service("web", "192.0.2.100"),
        endpoints("web", ["cp-1"]),
        pool("lan", "192.0.2.100/30"),
        advertisement("lan"),
    ]
    r = serve(WARN, documents=docs)
    resp = _response(r.review(MUTATE_NODE, _node_review("cp-1", labels={EXCLUDE_LABEL: ""})))
    expected = _expected_lines(docs, node("cp-1", labels={EXCLUDE_LABEL: ""}), EligibilitySettings())
    assert expected == ["LoadBalancer 192.0.2.100 (default/web) will have NO announcing node"]
    assert resp["warnings"] == ["node cp-1 excluded from LoadBalancer announcements: 1 service loses its IP", *expected]


def test_two_nodes_warn_where_each_ip_moves_naming_three_then_more(serve) -> None:  # type: ignore[no-untyped-def]
    docs: list[dict[str, Any]] = [node("cp-1"), node("worker-2"), pool("lan", "192.0.2.0/24"), advertisement("lan")]
    for i in range(40):
        docs += [service(f"s{i:02}", f"192.0.2.{i + 1}"), endpoints(f"s{i:02}", ["cp-1", "worker-2"])]
    r = serve(WARN, documents=docs)
    resp = _response(r.review(MUTATE_NODE, _node_review("cp-1", labels={EXCLUDE_LABEL: "true"})))
    expected = _expected_lines(docs, node("cp-1", labels={EXCLUDE_LABEL: "true"}), EligibilitySettings())
    owned = sum(
        1 for sp in plan(build_cluster(docs).cluster, EligibilitySettings()).services.values() if sp.announcer == "cp-1"
    )
    assert owned > 3
    assert resp["warnings"] == [
        f"node cp-1 excluded from LoadBalancer announcements: {owned} services move to another node",
        *expected,
        f"and {owned - 3} more (run l2guard explain for the full picture)",
    ]
    assert all("moves from cp-1 to worker-2" in line for line in expected)


def test_announcer_ignoring_the_label_says_so_instead_of_breakage(serve) -> None:  # type: ignore[no-untyped-def]
    docs = [
        node("cp-1"),
        service("web", "192.0.2.100"),
        endpoints("web", ["cp-1"]),
        pool("lan", "192.0.2.100/30"),
        advertisement("lan"),
    ]
    ignoring = EligibilitySettings(ignore_exclude_label=True)
    assert _expected_lines(docs, node("cp-1", labels={EXCLUDE_LABEL: ""}), ignoring) == []
    for settings in (WARN, STRIP, DENY):
        r = serve(replace(settings, eligibility=ignoring), documents=docs)
        path = VALIDATE_NODE if settings is DENY else MUTATE_NODE
        resp = _response(r.review(path, _node_review("cp-1", labels={EXCLUDE_LABEL: ""})))
        assert resp == {
            "uid": "9a31aeb7-473f-4bd0-8070-aef708b828f2",
            "allowed": True,
            "warnings": [
                "node cp-1: the announcer ignores the exclude label (--ignore-exclude-lb); no LoadBalancer IP moves"
            ],
        }


# ----- strip mode ------------------------------------------------------------------------------------------------


def test_strip_removes_only_the_label_and_reapplying_gives_no_patch(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(STRIP, documents=api_documents())
    review = captured("node-label-exclude-empty")
    resp = _response(r.review(MUTATE_NODE, review))  # check_response applied the patch already
    assert resp["patchType"] == "JSONPatch"
    assert resp["warnings"][:3] == [
        "l2guard removed the exclude label from node worker-1",
        f"to keep the label: kubectl annotate node worker-1 {ALLOW_EXCLUDE_ANNOTATION}=true",
        "then label the node again",
    ]
    import base64

    patched = check_strip_patch(review["request"]["object"], json.loads(base64.b64decode(resp["patch"])))
    again = copy.deepcopy(review)
    again["request"]["object"] = patched
    assert _response(r.review(MUTATE_NODE, again)) == {"uid": review["request"]["uid"], "allowed": True}
    # A loop that re-adds the label gets one patch per attempt, each applying cleanly; never a patch without it.
    for _ in range(3):
        assert "patch" in _response(r.review(MUTATE_NODE, review))


def test_strip_exemptions_warn_instead(serve) -> None:  # type: ignore[no-untyped-def]
    settings = replace(STRIP, scope=StripScope(exempt_users=("system:serviceaccount:karpenter:*",)))
    r = serve(settings, documents=api_documents())
    cases: dict[str, dict[str, Any]] = {}
    cases["karpenter"] = captured("node-label-exclude-karpenter-dryrun")
    cases["drain"] = captured("node-status-patch-adds-exclude")  # the node is unschedulable
    annotated = captured("node-label-exclude-empty")
    annotated["request"]["object"]["metadata"]["annotations"][ALLOW_EXCLUDE_ANNOTATION] = "true"
    cases["annotation"] = annotated
    exempt = captured("node-label-exclude-empty")
    exempt["request"]["userInfo"]["username"] = "system:serviceaccount:karpenter:karpenter"
    cases["requester"] = exempt
    expected = {
        "karpenter": "not stripped: the value is karpenter (Karpenter is disrupting the node)",
        "drain": "not stripped: the node is unschedulable (a drain is in progress)",
        "annotation": f"not stripped: the node is annotated {ALLOW_EXCLUDE_ANNOTATION}=true",
        "requester": "not stripped: the requester is exempt",
    }
    for name, review in cases.items():
        resp = _response(r.review(MUTATE_NODE, review))
        assert "patch" not in resp and resp["allowed"], name
        assert resp["warnings"][-1] == expected[name], name
        assert "LoadBalancer 192.0.2.100 (default/web) moves from worker-1 to worker-2" in resp["warnings"], name


def test_strip_scope_limits_to_matching_nodes_and_requesters(serve) -> None:  # type: ignore[no-untyped-def]
    scope = StripScope(
        node_selector=parse_selector_text("node-role.kubernetes.io/control-plane"), groups=("system:masters",)
    )
    r = serve(replace(STRIP, scope=scope), documents=api_documents())
    worker = _response(r.review(MUTATE_NODE, captured("node-label-exclude-empty")))
    assert (
        "patch" not in worker
        and worker["warnings"][-1] == "not stripped: the node is outside the policy's node selector"
    )
    cp = captured("node-label-exclude-empty")
    for key in ("object", "oldObject"):
        cp["request"][key]["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""
    assert "patch" in _response(r.review(MUTATE_NODE, cp))
    cp["request"]["userInfo"]["groups"] = ["developers"]
    resp = _response(r.review(MUTATE_NODE, cp))
    assert "patch" not in resp and resp["warnings"][-1].startswith("not stripped: the requester is outside")


# ----- deny mode -------------------------------------------------------------------------------------------------


def test_deny_mode_refuses_naming_the_ips_and_the_override(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(DENY, documents=api_documents())
    resp = _response(r.review(VALIDATE_NODE, captured("node-label-exclude-empty")))
    assert resp["allowed"] is False and resp["status"]["code"] == 403
    assert resp["status"]["message"] == (
        f"l2guard denied label {EXCLUDE_LABEL} on node worker-1: affected: 192.0.2.100 (default/web) -> worker-2. "
        f"To exclude it anyway: kubectl annotate node worker-1 {ALLOW_EXCLUDE_ANNOTATION}=true, then label it again"
    )
    # The mutating endpoint does not serve deny (so registering both never answers twice)...
    assert _response(r.review(MUTATE_NODE, captured("node-label-exclude-empty"))) == {
        "uid": "9a31aeb7-473f-4bd0-8070-aef708b828f2",
        "allowed": True,
    }
    # ...and Karpenter's label falls back to a warning.
    karpenter = _response(r.review(VALIDATE_NODE, captured("node-label-exclude-karpenter-dryrun")))
    assert karpenter["allowed"] and karpenter["warnings"][-1].startswith("not denied: the value is karpenter")


def test_validate_endpoint_is_silent_outside_deny_mode_and_off_is_silent_everywhere(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    assert _response(r.review(VALIDATE_NODE, captured("node-label-exclude-empty")))["allowed"]
    assert "warnings" not in _response(r.review(VALIDATE_NODE, captured("node-label-exclude-empty")))
    off = serve(replace(WARN, node_policy=Mode.OFF), documents=api_documents())
    for path in (MUTATE_NODE, VALIDATE_NODE):
        assert "warnings" not in _response(off.review(path, captured("node-label-exclude-empty")))


def test_decisions_are_logged_once_with_node_user_operation_reason(serve, caplog) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    with caplog.at_level(logging.INFO, logger="webhook.app"):
        r.review(MUTATE_NODE, captured("node-label-exclude-empty"))
        r.review(MUTATE_NODE, captured("node-label-unrelated"))
    records = [rec for rec in caplog.records if rec.name == "webhook.app"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["node"] == "worker-1" and fields["user"] == "admin" and fields["operation"] == "UPDATE"
    assert fields["outcome"] == "warned" and fields["reason"] == "warn" and fields["event"] == "admission"


# ----- pools and advertisements ----------------------------------------------------------------------------------


def test_pool_create_and_update_are_allowed(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    for name in ("ipaddresspool-create", "ipaddresspool-update-merge-patch"):
        resp = _response(r.review(VALIDATE_POOL, captured(name)))
        assert resp["allowed"] and "warnings" not in resp, (name, resp)


def test_invalid_pools_are_denied_with_the_reason(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    variants = {
        "spec.addresses: must list at least one CIDR or range": [],
        "'192.0.2.300/24' is not a valid CIDR": ["192.0.2.300/24"],
        "is reversed": ["192.0.2.20-192.0.2.10"],
        "overlaps 192.0.2.100-192.0.2.120 of pool metallb-system/lan": ["192.0.2.96/28"],
    }
    for expected, addresses in variants.items():
        review = captured("ipaddresspool-create")
        review["request"]["object"]["metadata"]["name"] = "other"
        review["request"]["object"]["spec"]["addresses"] = addresses
        resp = _response(r.review(VALIDATE_POOL, review))
        assert resp["allowed"] is False and expected in resp["status"]["message"], (expected, resp)
        assert resp["status"]["message"].startswith("invalid IPAddressPool metallb-system/other: ")


def test_pool_outside_the_metallb_namespace_is_denied_on_create(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = captured("ipaddresspool-create")
    review["request"]["object"]["metadata"]["namespace"] = "default"
    resp = _response(r.review(VALIDATE_POOL, review))
    assert (
        not resp["allowed"] and "must be created in the MetalLB namespace 'metallb-system'" in resp["status"]["message"]
    )


def test_pool_warnings_beyond_metallb(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = captured("ipaddresspool-update-merge-patch")
    review["request"]["object"]["spec"]["addresses"] = ["2001:db8::100/124"]  # shrinks away 192.0.2.100
    resp = _response(r.review(VALIDATE_POOL, review))
    assert resp["allowed"] and resp["warnings"] == [
        "IPAddressPool metallb-system/lan: shrinking releases IPs in use: 192.0.2.100 (default/web)"
    ]


def test_l2advertisement_create_and_delete(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    resp = _response(r.review(VALIDATE_ADVERTISEMENT, captured("l2advertisement-create")))
    assert resp == {"uid": "3cfdf11d-d4ac-4419-8295-3aea9f2ec935", "allowed": True}
    resp = _response(r.review(VALIDATE_ADVERTISEMENT, captured("l2advertisement-delete")))
    assert resp["allowed"] and resp["warnings"] == [
        "IPAddressPool metallb-system/lan: no L2Advertisement will announce this pool any more"
    ]
    bad = captured("l2advertisement-create")
    bad["request"]["object"]["spec"]["ipAddressPools"] = ["lan", "lan"]
    bad["request"]["object"]["spec"]["nodeSelectors"] = [
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}
    ]
    resp = _response(r.review(VALIDATE_ADVERTISEMENT, bad))
    assert not resp["allowed"]
    assert "duplicate pool name 'lan'" in resp["status"]["message"]
    assert "operator Exists takes no values" in resp["status"]["message"]


def test_l2advertisement_selecting_only_excluded_nodes_warns(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = captured("l2advertisement-create")
    review["request"]["object"]["spec"]["nodeSelectors"] = [{"matchLabels": {"kubernetes.io/hostname": "cp-1"}}]
    resp = _response(r.review(VALIDATE_ADVERTISEMENT, review))
    assert resp["allowed"] and resp["warnings"] == [
        "L2Advertisement metallb-system/lan: every selected node is ineligible "
        "(exclude label or NetworkUnavailable): cp-1"
    ]


def test_config_validation_without_a_synced_view_says_what_was_not_checked(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, view=ClusterView(EligibilitySettings()))
    resp = _response(r.review(VALIDATE_POOL, captured("ipaddresspool-create")))
    assert resp["allowed"] and resp["warnings"][-1] == messages.NOT_SYNCED_CONFIG


# ----- failure rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}}
            ).encode(),
            "unsupported review",
        ),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "missing request"),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}).encode(),
            "missing request.uid",
        ),
        (b"{" * 100_000, "body is not JSON"),
    ],
)
def test_bad_input_is_a_400_with_a_json_error(serve, body: bytes, error: str) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    for path in (MUTATE_NODE, VALIDATE_NODE, VALIDATE_POOL, VALIDATE_ADVERTISEMENT):
        resp = r.post(path, body)
        assert resp.status_code == 400 and error in resp.json()["error"] and "Traceback" not in resp.text


def test_oversized_body_is_refused(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = captured("node-label-exclude-empty")
    review["request"]["object"]["metadata"]["annotations"]["big"] = "x" * (4 * 1024 * 1024)
    resp = r.post(MUTATE_NODE, review)
    assert resp.status_code == 400 and "larger than" in resp.json()["error"]

    def chunks():  # type: ignore[no-untyped-def]
        yield json.dumps(review).encode()

    resp = r.client.post(f"{r.url}{MUTATE_NODE}", content=chunks())  # chunked: no content-length
    assert resp.status_code == 400 and "larger than" in resp.json()["error"]


def test_internal_errors_fail_open_on_nodes_and_closed_on_pools(serve, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from webhook import handlers

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    r = serve(WARN, documents=api_documents())
    monkeypatch.setattr(handlers, "review_node", boom)
    monkeypatch.setattr(handlers, "review_config", boom)
    node_resp = _response(r.review(MUTATE_NODE, captured("node-label-exclude-empty")))  # past the fast path
    assert node_resp["allowed"] and node_resp["warnings"] == [
        "l2guard internal error (RuntimeError); the request was allowed unchecked (see the webhook log)"
    ]
    pool_resp = _response(r.review(VALIDATE_POOL, captured("ipaddresspool-create")))
    assert not pool_resp["allowed"] and pool_resp["status"]["message"] == (
        "l2guard internal error while validating (RuntimeError); retry, or see the webhook log"
    )
    metrics = r.health.get("/metrics").text
    assert 'l2guard_webhook_requests_total{endpoint="mutate-v1-node",outcome="error"} 1.0' in metrics
    assert 'l2guard_webhook_requests_total{endpoint="validate-ipaddresspool",outcome="error"} 1.0' in metrics


def test_hostile_uid_and_requester_reach_encoding_counting_and_logging_and_are_answered(serve, caplog) -> None:  # type: ignore[no-untyped-def]
    """Every step after deciding (encoding, counting, the decision log) sees a 3 MB uid (escaped) with lone
    surrogates and a requester name of control characters and surrogates; each review is still a 200 AdmissionReview
    with its uid. (No real input is known that makes these steps raise; the guard around them is for what is not.)"""
    r = serve(WARN, documents=api_documents())
    uid = "u\ud800" + "\x00\u202e" * 250_000
    node_review = captured("node-label-exclude-empty")
    pool_review = captured("ipaddresspool-create")
    pool_review["request"]["object"]["spec"]["addresses"] = ["192.0.2.0/24", "not an address"]
    with caplog.at_level(logging.INFO, logger="webhook.app"):
        for path, review in ((MUTATE_NODE, node_review), (VALIDATE_POOL, pool_review)):
            review["request"]["uid"] = uid
            review["request"]["userInfo"]["username"] = "\udfff\n" * 1000
            body = r.review(path, review)  # checks the uid echoes back, among the wire rules
            assert body["response"]["allowed"] is (path == MUTATE_NODE)
    decisions = [rec for rec in caplog.records if getattr(rec, "fields", {}).get("event") == "admission"]
    assert [rec.fields["outcome"] for rec in decisions] == ["warned", "denied"]  # type: ignore[attr-defined]
    for rec in decisions:  # one log line does not carry megabytes of what the request said
        assert all(len(v) <= 256 for v in rec.fields.values() if isinstance(v, str))  # type: ignore[attr-defined]
        assert rec.fields["uid"].startswith("u\ud800\x00\u202e")  # type: ignore[attr-defined]


def test_health_endpoints_and_metrics(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    assert r.health.get("/healthz").json() == {"status": "ok"}
    assert r.health.get("/readyz").json() == {"ready": True, "tls_loaded": True, "cluster_view_synced": True}
    r.review(MUTATE_NODE, captured("node-label-exclude-empty"))
    text = r.health.get("/metrics").text
    assert 'l2guard_webhook_requests_total{endpoint="mutate-v1-node",outcome="warned"} 1.0' in text
    assert 'l2guard_webhook_request_seconds_count{endpoint="mutate-v1-node"} 1.0' in text
    assert "l2guard_webhook_cluster_view_synced 1.0" in text
    expiry = float(
        next(line.split()[1] for line in text.splitlines() if line.startswith("l2guard_webhook_cert_expiry_seconds "))
    )
    assert 0 < expiry <= 86400


def test_long_names_and_control_characters_stay_within_the_warning_rules(serve) -> None:  # type: ignore[no-untyped-def]
    long_name = "n" * 60 + "." + "m" * 60
    docs = [node(long_name), pool("lan", "192.0.2.0/24"), advertisement("lan")]
    for i in range(3):
        docs += [
            service("s" * 60 + str(i), f"192.0.2.{i + 1}", namespace="x" * 60),
            endpoints("s" * 60 + str(i), [long_name], namespace="x" * 60),
        ]
    r = serve(WARN, documents=docs)
    resp = _response(r.review(MUTATE_NODE, _node_review(long_name, labels={EXCLUDE_LABEL: "a\nb"})))
    warnings = resp["warnings"]
    assert len(warnings) == 4 and all(len(w) <= 120 for w in warnings)
    # Names are shortened in the middle; the verdicts, which say what breaks, stay whole (found in review).
    assert warnings[0].endswith("excluded from LoadBalancer announcements: 3 services lose their IPs")
    assert all(w.endswith(") will have NO announcing node") and "…" in w for w in warnings[1:])


def test_realistic_long_names_keep_every_warning_whole(serve) -> None:  # type: ignore[no-untyped-def]
    """An EKS-style node name, a long namespace and a dual-stack service: nothing is cut by the 120-char limit."""
    name = "ip-10-0-101-23.eu-west-1.compute.internal"
    docs = [
        node(name),
        pool("lan", "192.0.2.0/24", "2001:db8:1234:5678::/64"),
        advertisement("lan"),
        service(
            "checkout-api-public", ["2001:db8:1234:5678::100", "192.0.2.100"], namespace="team-payments-production"
        ),
        endpoints("checkout-api-public", [name], namespace="team-payments-production"),
    ]
    for mode in (WARN, STRIP):
        r = serve(mode, documents=docs)
        resp = _response(r.review(MUTATE_NODE, _node_review(name, labels={EXCLUDE_LABEL: ""})))
        assert resp["warnings"], mode
        for w in resp["warnings"]:
            assert len(w) <= 120 and "…" not in w, w
        assert any(name in w for w in resp["warnings"])
    assert f"kubectl annotate node {name} {ALLOW_EXCLUDE_ANNOTATION}=true" in resp["warnings"][1]


def test_a_label_loop_costs_one_impact_analysis_per_snapshot(serve, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from webhook import handlers

    calls: list[str] = []
    real = handlers.node_impact

    def counting(index, node, **kw):  # type: ignore[no-untyped-def]
        calls.append(node.name)
        return real(index, node, **kw)

    monkeypatch.setattr(handlers, "node_impact", counting)
    r = serve(WARN, documents=api_documents())
    answers = [r.review(MUTATE_NODE, captured("node-label-exclude-empty")) for _ in range(5)]
    assert calls == ["worker-1"] and all(a == answers[0] for a in answers)
    r.review(MUTATE_NODE, captured("node-status-patch-adds-exclude"))  # other labels: analysed afresh
    assert calls == ["worker-1", "worker-1"]


def test_deny_mode_never_refuses_a_kubelet_registering_its_node(serve) -> None:  # type: ignore[no-untyped-def]
    """Found in review: a kubelet started with --node-labels=<exclude label> registers its Node by CREATE; refusing
    it would keep the node out of the cluster. Kubelets (group system:nodes) are exempt by default."""
    r = serve(DENY, documents=api_documents())
    review = captured("node-create")
    req = review["request"]
    req["userInfo"] = {"username": "system:node:worker-1", "groups": ["system:nodes", "system:authenticated"]}
    req["object"]["metadata"]["labels"][EXCLUDE_LABEL] = ""
    resp = _response(r.review(VALIDATE_NODE, review))
    assert resp["allowed"] is True
    assert resp["warnings"][-1] == "not denied: the requester is exempt"
    # Setting an exempt list of one's own keeps the kubelet protection (found in review: it used to replace it)...
    own = serve(replace(DENY, scope=StripScope(exempt_groups=("admins",))), documents=api_documents())
    assert _response(own.review(VALIDATE_NODE, review))["allowed"] is True
    # ...unless enforcement on kubelets is asked for explicitly.
    strict = serve(replace(DENY, scope=StripScope(exempt_kubelets=False)), documents=api_documents())
    assert _response(strict.review(VALIDATE_NODE, review))["allowed"] is False
    # The same CREATE by an administrator is refused.
    req["userInfo"] = {"username": "admin", "groups": ["system:masters", "system:authenticated"]}
    assert _response(r.review(VALIDATE_NODE, review))["allowed"] is False


def test_file_mode_reads_only_the_metallb_namespace_like_the_live_mode(serve) -> None:  # type: ignore[no-untyped-def]
    # `kubectl get ... -A` output holds a pool in another namespace; MetalLB (and the live mode) never see it.
    elsewhere = pool("team", "198.51.100.0/24", namespace="default")
    r = serve(WARN, documents=[*api_documents(), elsewhere])
    review = captured("ipaddresspool-create")
    review["request"]["object"]["metadata"]["name"] = "other"
    review["request"]["object"]["spec"]["addresses"] = ["198.51.100.0/25"]
    resp = _response(r.review(VALIDATE_POOL, review))
    assert resp["allowed"] is True, resp
    assert sorted(r.view.snapshot.cluster.pools) == ["metallb-system/lan"]


def test_l2advertisement_listing_an_interface_twice_is_allowed_with_a_warning(serve) -> None:  # type: ignore[no-untyped-def]
    r = serve(WARN, documents=api_documents())
    review = captured("l2advertisement-create")
    review["request"]["object"]["spec"]["interfaces"] = ["eth0", "eth0"]
    resp = _response(r.review(VALIDATE_ADVERTISEMENT, review))
    assert resp["allowed"] is True
    assert resp["warnings"] == ["L2Advertisement metallb-system/lan: spec.interfaces: interface eth0 is listed twice"]
