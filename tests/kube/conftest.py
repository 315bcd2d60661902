"""The API double and a real `kubernetes` client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.webhook.apidouble import APIDouble


def client_for(double: APIDouble) -> k8s.ApiClient:
    config = k8s.Configuration()
    config.host = double.url
    return k8s.ApiClient(config)


@pytest.fixture
def double() -> Iterator[APIDouble]:
    with APIDouble({}) as d:
        yield d


@pytest.fixture
def api(double: APIDouble) -> Iterator[k8s.ApiClient]:
    client = client_for(double)
    yield client
    client.close()
