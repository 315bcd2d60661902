"""RBAC grants exactly what each component uses.

`WEBHOOK`, `SELF_MANAGED` and `SPEAKER` are written by hand from the code, citing where the calls are made. The rendered
RBAC of every install must grant each ServiceAccount exactly that set, nothing more. Then the real processes run against
the API double (tests/webhook/apidouble.py) and every request they make, mapped to RBAC attributes as the API server's
request-info does (GET on a collection: list, or watch with ?watch; on a name: get; POST create; PUT update; PATCH
patch; a fieldSelector metadata.name=X names the object of a list or watch), must be allowed by that RBAC, evaluated
here as the RBAC authorizer does (RoleBindings scope their role to their namespace, ClusterRoleBindings to everything;
resourceNames, when set, must contain the name)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.control.test_speaker_live import get, start, wait
from tests.kube.scripts import quiet_scripts
from tests.kube.test_client import kubeconfig
from tests.webhook.apidouble import APIDouble
from tests.webhook.conftest import PKI, captured, pki  # noqa: F401  (pki: the fixture)
from tests.webhook.webhook_process import WebhookProcess
from webhook.app import VALIDATE_POOL

from .conftest import INSTALLS, Doc, of_kind, one
from .test_settings import container_env

# (namespace, or None for every namespace and the cluster scope; API group; resource; verb; resourceName or None)
Grant = tuple[str | None, str, str, str, str | None]
SYSTEM, METALLB = "l2guard-system", "metallb-system"
WEBHOOK_SA, SPEAKER_SA = (SYSTEM, "l2guard-webhook"), ("l2guard-speaker", "l2guard-speaker")


def list_watch(namespace: str | None, group: str, *resources: str) -> set[Grant]:
    return {(namespace, group, r, v, None) for r in resources for v in ("list", "watch")}


# The cluster view (l2guard/kube/resources.py, read by l2guard/kube/source.py: paged lists, then watches).
VIEW = list_watch(None, "", "nodes", "services") | list_watch(None, "discovery.k8s.io", "endpointslices")
VIEW |= list_watch(METALLB, "metallb.io", "ipaddresspools", "l2advertisements")
VIEW |= list_watch(SYSTEM, "coordination.k8s.io", "leases")  # the speakers' liveness
WEBHOOK = VIEW
# Self-managed certificates (l2guard/kube/webhookcerts.py, webhook/selfsigned.py): its Secret, by name (get,
# list+watch with fieldSelector metadata.name, update), and create (never limited by name); the caBundle of its own
# two webhook configurations, by name (get, list+watch, JSON patch).
SELF_MANAGED: set[Grant] = {
    (SYSTEM, "", "secrets", v, "l2guard-webhook-tls") for v in ("get", "list", "watch", "update")
}
SELF_MANAGED |= {(SYSTEM, "", "secrets", "create", None)}
SELF_MANAGED |= {
    (None, "admissionregistration.k8s.io", r, v, "l2guard")
    for r in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
    for v in ("get", "list", "watch", "patch")
}
# l2guard/kube/l2status.py: MetalLB's ServiceL2Status objects for what this node announces, in the MetalLB
# namespace: listed and watched, created (generateName) and deleted; the status written through its subresource
# with a merge patch, as MetalLB's speaker does.
L2STATUS: set[Grant] = {
    (METALLB, "metallb.io", "servicel2statuses", v, None) for v in ("list", "watch", "create", "delete")
}
L2STATUS |= {(METALLB, "metallb.io", "servicel2statuses/status", "patch", None)}
SPEAKER = (
    VIEW
    | {
        # l2guard/kube/lease.py: GET, POST when missing, PUT to renew, PATCH (merge) to release; its own Lease only,
        # whose name depends on the node.
        (SYSTEM, "coordination.k8s.io", "leases", v, None)
        for v in ("get", "create", "update", "patch")
    }
    | {
        # l2guard/kube/events.py: POST a new Event, PATCH count and lastTimestamp of a repeat; after a 409 on the
        # deterministic name, GET that Event and list (fieldSelector involvedObject) the newer ones; in the
        # namespace of the object, or "default" for a Node.
        (None, "", "events", v, None)
        for v in ("create", "patch", "get", "list")
    }
    | L2STATUS
)
# A speaker in dry-run (shadow mode) never writes MetalLB's objects (l2guard/control/command.py: no
# L2StatusWriter in dry-run), so the speaker-dry-run component grants none of L2STATUS.
SHADOW_SPEAKER = SPEAKER - L2STATUS


def granted(docs: list[Doc], sa: tuple[str, str]) -> set[Grant]:
    roles = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]): r for r in docs if "rules" in r}
    out: set[Grant] = set()
    for binding in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding"):
        subjects = {(s["kind"], s.get("namespace"), s["name"]) for s in binding["subjects"]}
        if ("ServiceAccount", *sa) not in subjects:
            continue
        scope = binding["metadata"].get("namespace")  # None for a ClusterRoleBinding
        ref = binding["roleRef"]
        role = roles[(ref["kind"], scope if ref["kind"] == "Role" else None, ref["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            out.add((scope, group, resource, verb, name))
    return out


def allowed(grants: set[Grant], request: Grant) -> bool:
    namespace, group, resource, verb, name = request
    return any(
        (g[0] is None or g[0] == namespace) and g[1:4] == (group, resource, verb) and g[4] in (None, name)
        for g in grants
    )


def test_every_binding_binds_a_rendered_role_to_one_of_our_service_accounts(renders: dict[str, list[Doc]]) -> None:
    for name, docs in renders.items():
        roles = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in docs if "rules" in r}
        bound = set()
        for binding in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding"):
            ref = binding["roleRef"]
            key = (ref["kind"], binding["metadata"].get("namespace") if ref["kind"] == "Role" else None, ref["name"])
            assert key in roles, (name, key)
            bound.add(key)
            for subject in binding["subjects"]:
                assert (subject["kind"], subject["namespace"], subject["name"]) in {
                    ("ServiceAccount", *WEBHOOK_SA),
                    ("ServiceAccount", *SPEAKER_SA),
                }
        assert bound == roles, name  # no role left unbound
        accounts = {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in of_kind(docs, "ServiceAccount")}
        for workload in of_kind(docs, "Deployment") + of_kind(docs, "DaemonSet"):
            spec = workload["spec"]["template"]["spec"]
            assert (workload["metadata"]["namespace"], spec["serviceAccountName"]) in accounts


def test_rbac_grants_exactly_what_each_component_uses(renders: dict[str, list[Doc]]) -> None:
    for name in INSTALLS:
        docs = renders[name]
        expected = WEBHOOK if "cert-manager" in name else WEBHOOK | SELF_MANAGED
        assert granted(docs, WEBHOOK_SA) == expected, name
        speakers = of_kind(docs, "DaemonSet")
        speaker = SHADOW_SPEAKER if "dry-run" in name else SPEAKER
        assert granted(docs, SPEAKER_SA) == (speaker if speakers else set()), name


RESOURCE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[a-z0-9]+)"
    r"(?:/(?P<name>[^/]+))?$"
)
PARSE_BOOL_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool, as the API server reads ?watch
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def attributes(method: str, target: str) -> Grant:
    url = urlsplit(target)
    m = RESOURCE.match(url.path)
    assert m, target
    query = parse_qs(url.query)
    name = m["name"]
    if method == "GET" and name is None:
        verb = "watch" if query.get("watch", ["false"])[0] in PARSE_BOOL_TRUE else "list"
        selector = dict(s.split("=", 1) for s in query.get("fieldSelector", [""])[0].split(",") if "=" in s)
        name = selector.get("metadata.name")
    else:
        verb = "get" if method == "GET" else VERBS[method]
    return (m["ns"], m["group"] or "", m["resource"], verb, name)


def test_the_request_attributes_are_read_as_the_api_server_reads_them() -> None:
    assert attributes("GET", "/api/v1/nodes?limit=500") == (None, "", "nodes", "list", None)
    assert attributes("GET", "/api/v1/services?watch=True&resourceVersion=5") == (None, "", "services", "watch", None)
    assert attributes("GET", "/api/v1/services?watch=0") == (None, "", "services", "list", None)
    lease = "/apis/coordination.k8s.io/v1/namespaces/l2guard-system/leases/l2guard-speaker-worker-1"
    assert attributes("PATCH", lease) == (SYSTEM, "coordination.k8s.io", "leases", "patch", "l2guard-speaker-worker-1")
    hooks = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    assert attributes("GET", f"{hooks}?watch=1&fieldSelector=metadata.name%3Dl2guard") == (
        None,
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        "watch",
        "l2guard",
    )
    # And the authorizer: a grant in one namespace does not reach a cluster-wide list, nor another name.
    grants = WEBHOOK | SELF_MANAGED
    assert allowed(grants, (SYSTEM, "", "secrets", "get", "l2guard-webhook-tls"))
    assert not allowed(grants, (SYSTEM, "", "secrets", "get", "other"))
    assert not allowed(grants, (None, "coordination.k8s.io", "leases", "list", None))


def test_the_speaker_makes_no_request_its_rbac_does_not_allow(renders: dict[str, list[Doc]], tmp_path: Path) -> None:
    """A speaker (dry-run: no root needed) live against the API double: it lists and watches, creates and renews
    its Lease, posts its Event, and releases the Lease on SIGTERM."""
    grants = granted(renders["webhook-and-speaker"], SPEAKER_SA)
    with APIDouble(quiet_scripts()) as double:
        proc, port, log = start(tmp_path, double, "worker-1")
        try:
            assert wait(lambda: get(port, "/readyz").status_code == 200, proc), log.read_text()
            assert wait(lambda: any(m == "POST" and "/events" in p for m, p in double.seen), proc)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        seen = [attributes(m, p) for m, p in double.seen]
    refused = sorted({a for a in seen if not allowed(grants, a)}, key=str)
    assert refused == []
    used = {(a[1], a[2], a[3]) for a in seen}
    assert {("coordination.k8s.io", "leases", v) for v in ("get", "create", "patch", "list", "watch")} <= used
    assert ("", "events", "create") in used and ("", "nodes", "watch") in used


def test_the_webhook_makes_no_request_its_rbac_does_not_allow(
    renders: dict[str, list[Doc]],
    tmp_path: Path,
    pki: PKI,  # noqa: F811
) -> None:
    """The webhook live against the API double (serving certificate from files): it lists and watches its view,
    and reads the pools again for a pool review."""
    grants = granted(renders["cert-manager"], WEBHOOK_SA)
    with APIDouble(quiet_scripts()) as double:
        argv = ["--cert-file", str(pki.cert_file), "--key-file", str(pki.key_file)]
        argv += ["--kubeconfig", str(kubeconfig(tmp_path, double.url))]
        with WebhookProcess(argv) as proc:
            assert wait_ready(proc), proc.lines
            with httpx.Client(verify=pki.client_context(), timeout=10) as client:
                resp = client.post(f"{proc.url}{VALIDATE_POOL}", json=captured("ipaddresspool-create"))
            assert resp.status_code == 200 and resp.json()["response"]["allowed"] is True, resp.text
        seen = [attributes(m, p) for m, p in double.seen]
    refused = sorted({a for a in seen if not allowed(grants, a)}, key=str)
    assert refused == []
    used = {(a[1], a[2], a[3]) for a in seen}
    assert ("metallb.io", "ipaddresspools", "list") in used and ("coordination.k8s.io", "leases", "watch") in used


def wait_ready(proc: WebhookProcess) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.health.get("/readyz").status_code == 200:
            return True
        time.sleep(0.05)
    return False


def test_the_self_managed_webhook_makes_no_request_its_rbac_does_not_allow(
    renders: dict[str, list[Doc]], tmp_path: Path
) -> None:
    """The webhook as the rendered Deployment runs it (its environment, self-managed certificates), live against
    the API double holding the rendered webhook configurations: it creates its Secret, writes both caBundles and
    gets ready, asking for nothing its RBAC refuses."""
    docs = renders["webhook-only"]
    grants = granted(docs, WEBHOOK_SA)
    (deployment,) = of_kind(docs, "Deployment")
    with APIDouble(quiet_scripts()) as double:
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            double.store.put(one(docs, kind, "l2guard"))
        argv = ["--kubeconfig", str(kubeconfig(tmp_path, double.url))]
        with WebhookProcess(argv, env=container_env(deployment)) as proc:
            assert wait_ready(proc), proc.lines
        seen = [attributes(m, p) for m, p in double.seen]
    refused = sorted({a for a in seen if not allowed(grants, a)}, key=str)
    assert refused == []
    used = {(a[2], a[3]) for a in seen}
    assert {("secrets", "create"), ("mutatingwebhookconfigurations", "patch")} <= used
    assert ("validatingwebhookconfigurations", "patch") in used
