"""Client construction: the configuration comes from the kubeconfig given, and urllib3 does not retry our calls."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client as k8s

from l2guard.kube.client import KubeconfigError, make_api_client
from tests.kube.scripts import NODES
from tests.webhook.apidouble import APIDouble, Reply


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: double\n"
        f"clusters:\n- name: double\n  cluster:\n    server: {server}\n"
        "users:\n- name: me\n  user:\n    token: not-a-secret\n"
        "contexts:\n- name: double\n  context:\n    cluster: double\n    user: me\n"
    )
    return path


def test_a_timed_out_read_is_not_retried(tmp_path: Path) -> None:
    """urllib3 retried a timed-out read 3 times by default: a live read bounded by 0.3 s took four requests."""
    with APIDouble({(NODES, False): [Reply(body=b"{}", delay=30)]}) as double:
        api = make_api_client(str(kubeconfig(tmp_path, double.url)))
        started = time.monotonic()
        with pytest.raises(Exception) as raised:  # the client's own error: translated by the callers
            k8s.CoreV1Api(api).list_node(_request_timeout=0.3, _preload_content=False)
        assert time.monotonic() - started < 10
        api.close()
        requests = [p for p, _, _, _ in double.log if p == NODES]
    assert requests == [NODES]
    assert "timed out" in str(raised.value)


def test_the_client_uses_the_kubeconfig_and_leaves_the_default_configuration_alone(tmp_path: Path) -> None:
    before = k8s.Configuration.get_default_copy().host
    api = make_api_client(str(kubeconfig(tmp_path, "http://127.0.0.1:9")))
    assert api.configuration.host == "http://127.0.0.1:9"
    assert k8s.Configuration.get_default_copy().host == before
    api.close()


def test_an_unknown_context_is_a_kubeconfig_error(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="not a usable kubeconfig"):
        make_api_client(str(kubeconfig(tmp_path, "http://127.0.0.1:9")), context="elsewhere")
