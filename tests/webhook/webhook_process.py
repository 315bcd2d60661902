"""`python -m webhook` as a real process, for tests that need the whole program: ports chosen up front (so no log
line has to be parsed to find them), stderr collected by a thread as JSON log lines, /healthz polled until it
answers, SIGTERM on exit. An optional `prefix` runs the process under a wrapper (e.g. `unshare`) that execs it, so
the PID stays the webhook's. Only 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (the sockets stay open until all are picked, so no port repeats)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any L2GUARD_ twin or KUBECONFIG, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2GUARD_") and k != "KUBECONFIG"}
    env.update(extra or {})
    return env


class WebhookProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        prefix: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.port, self.health_port = free_ports(2)
        cmd = [
            *prefix,
            sys.executable,
            "-m",
            "webhook",
            "--host",
            "127.0.0.1",
            f"--port={self.port}",
            f"--health-port={self.health_port}",
            "--log-format=json",
            *argv,
        ]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.health = httpx.Client(base_url=f"http://127.0.0.1:{self.health_port}", timeout=10)
        try:
            self._wait_healthy(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"the webhook exited with {self.proc.returncode}: {self.lines}")
            try:
                if self.health.get("/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the webhook did not answer /healthz: {self.lines}"
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (anything else the process printed is kept in `lines` only)."""
        docs = []
        for line in list(self.lines):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                docs.append(doc)
        return docs

    def wait_for_log(self, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for doc in self.logs():
                if predicate(doc):
                    return doc
            assert self.proc.poll() is None, f"the webhook exited with {self.proc.returncode}: {self.lines}"
            assert time.monotonic() < deadline, f"no such log line: {self.lines}"
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed after 15 s)."""
        self.health.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> WebhookProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
