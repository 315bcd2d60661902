"""Client construction: an `ApiClient` from the in-cluster configuration or a kubeconfig, with urllib3's automatic
retries turned off, and every way a kubeconfig can be unusable turned into one `KubeconfigError` line.

Why no automatic retries: urllib3 retries a failed connection or a timed-out read 3 times by default, inside one
call, so a live read bounded by 1 s could take 4 s, and a lease renewal could hide three failures. Each caller
has its own policy instead (the list+watch source backs off and re-lists, the lease keeper renews on its next
tick, a live read falls back to the cache). Watches lose nothing: urllib3 only ever retries before the response
headers arrive, never a stream that is already being read.

It must not read settings or the environment beyond what the client's loaders read (`$KUBECONFIG`, the
service-account files), and must not make API calls.
"""

from __future__ import annotations

import os

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config


class KubeconfigError(Exception):
    """No usable client configuration; the message is one line naming the kubeconfig and the alternative."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(
            f"kubeconfig {path}: {reason}; give a working --kubeconfig FILE, "
            "or serve from files with --cluster-state FILE instead of the API"
        )
        self.path = path
        self.reason = reason  # without the advice, for a command that offers another alternative


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _load_kubeconfig(config: k8s.Configuration, path: str, *, context: str = "", note: str = "") -> None:
    """`load_kube_config` into `config` with everything it raises turned into KubeconfigError. `path` may be a
    list joined by ':' as in $KUBECONFIG (the client merges the files that exist); `context` names a context other
    than the current one; `note` is added to the reason."""
    shown = os.path.expanduser(path)
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context or None, client_configuration=config
        )
        return
    except Exception as exc:  # the client raises ConfigException, PyYAML errors, TypeError, OSError, ...
        if not any(os.path.exists(os.path.expanduser(p)) for p in path.split(os.pathsep) if p):
            reason = "no such file"
        elif isinstance(exc, OSError):
            reason = f"cannot read: {exc.strerror or _one_line(exc)}"
        elif isinstance(exc, yaml.YAMLError | UnicodeError):
            reason = f"not YAML ({_one_line(exc)})"
        elif isinstance(exc, k8s_config.ConfigException):
            reason = f"not a usable kubeconfig ({_one_line(exc).removeprefix('Invalid kube-config file. ')})"
        else:
            reason = f"not a usable kubeconfig ({type(exc).__name__}: {_one_line(exc)})"
        raise KubeconfigError(shown, reason + note) from exc


def make_api_client(kubeconfig: str = "", *, context: str = "") -> k8s.ApiClient:
    """In-cluster configuration, else the kubeconfig (explicit path, $KUBECONFIG or ~/.kube/config), with no
    automatic retries (see the module docstring). A `kubeconfig` or a `context` (as kubectl's --context) skips the
    in-cluster configuration. Raises KubeconfigError when none of them is usable. The client's global default
    configuration is left alone."""
    config = k8s.Configuration()
    if kubeconfig or context:
        _load_kubeconfig(config, kubeconfig or k8s_config.KUBE_CONFIG_DEFAULT_LOCATION, context=context)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as exc:
            note = f", and not running in a cluster ({_one_line(exc)})"
            _load_kubeconfig(config, k8s_config.KUBE_CONFIG_DEFAULT_LOCATION, note=note)
    # False, not 0: urllib3 then raises the underlying error (a read timeout, a refused connection) itself instead
    # of wrapping it in MaxRetryError, and a redirect is returned as it is (the API server sends none).
    config.retries = False
    return k8s.ApiClient(config)
