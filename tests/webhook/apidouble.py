"""An API double: a local HTTP server that speaks the kube-apiserver's wire format for the requests the adapter
makes, for the real `kubernetes` client to talk to. It is a double, not a fake cluster, because no kube-apiserver
(nor etcd) can run here; every response it gives is a captured one (`tests/data/api/`, from a kube-apiserver
v1.36: see /work/shared/fixtures/README.md) or is derived from one by changing only names and versions.

Lists and watches are scripted: lists are plain JSON bodies with the captured headers (including the HTTP 410
`list-too-old.json`); watches are chunked streams, one JSON event per chunk and line, as the API server sends them
(the 410 ERROR event of `watch-too-old.jsonl` included). Each path has a script of responses consumed in order; the
last one repeats; a reply can be delayed, like a hung API server. A watch with nothing left to say is held open
briefly and then ended, like a server-side watch timeout; a watch answer says `Connection: close`, since the double
closes the connection after it (unannounced, urllib3 would send the next request on the closed connection and see
it fail, which a speaker counts as losing the API).

Leases (coordination.k8s.io/v1) and core/v1 Events are stored objects instead, under the API server's paths
(`/apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME]`, `/api/v1/namespaces/NS/events[/NAME]`), unless a
script claims the path:
- create (POST, 201; 409 AlreadyExists shaped like `secret-create-conflict.json`), get (200; 404 NotFound, the same
  Status shape), list (GET on the collection), update (PUT, 200), patch (PATCH, 200), delete (200, the Status of
  `lease-delete.json`);
- every write that changes the object takes a new resourceVersion from one counter, like etcd's revision; a PUT
  that changes nothing keeps it (as the v2 capture `lease-update-renew` notes);
- a PUT or PATCH carrying a `metadata.resourceVersion` other than the stored one answers 409 Conflict, shaped like
  the captured `lease-update-conflict.json`;
- merge patches (RFC 7386) and strategic merge patches are both applied as merge patches: Lease specs and Events
  hold no lists a patch would merge by key, so the two agree as long as a patch leaves metadata's lists alone;
  JSON patches answer 415;
- the server fills in uid, resourceVersion and creationTimestamp, but writes no managedFields;
- a watch (`?watch=1&resourceVersion=N`) on a stored collection streams ADDED, MODIFIED and DELETED events for
  the writes after N, then new ones as they happen, for a few seconds, as a server-side watch timeout ends it;
- `hang` delays the answer to every stored-object request (a hung API server; cut short when the double stops),
  and a stopped double closes even kept-alive connections unanswered, like a dead one.
Only 127.0.0.1, only for tests.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = Path(__file__).resolve().parents[1] / "data" / "api"


def captured_headers(name: str) -> tuple[int, list[tuple[str, str]]]:
    """(status, headers) from a captured `*.headers.txt` (HTTP/2 pseudo status line first)."""
    lines = (API / name).read_text().splitlines()
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            if key.lower() not in ("content-length", "date"):
                headers.append((key.strip(), value.strip()))
    return status, headers


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""  # a list body
    events: list[bytes] | None = None  # a watch stream: one line per event
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "application/json")])
    hold: float = 0.3  # seconds a watch stays open after its events
    delay: float = 0.0  # seconds before the status line is sent (a hung API server; cut short when the double stops)


def list_reply(name: str) -> Reply:
    return Reply(body=(API / name).read_bytes())


def too_old_list() -> Reply:
    status, headers = captured_headers("list-too-old.headers.txt")
    return Reply(status=status, body=(API / "list-too-old.json").read_bytes(), headers=headers)


def watch_reply(name: str | None = None, *, hold: float = 0.3) -> Reply:
    events = [] if name is None else [ln.encode() for ln in (API / name).read_text().splitlines() if ln.strip()]
    _, headers = captured_headers("watch-nodes.headers.txt")
    return Reply(events=events, headers=headers, hold=hold)


OBJECT_PATH = re.compile(
    r"^/(?P<prefix>api/v1|apis/coordination\.k8s\.io/v1)/namespaces/(?P<namespace>[^/]+)/(?P<plural>leases|events)"
    r"(?:/(?P<name>[^/]+))?$"
)
# plural -> (API group, apiVersion, kind, the resource as the API server names it in messages)
STORED = {
    "leases": ("coordination.k8s.io", "coordination.k8s.io/v1", "Lease", "leases.coordination.k8s.io"),
    "events": ("", "v1", "Event", "events"),
}
MAX_BODY = 1024 * 1024
WATCH_HOLD = 5.0  # seconds a watch of stored objects stays open


def captured_json(name: str) -> Any:
    return json.loads((API / name).read_text())


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class ObjectStore:
    """Leases and Events by path, with resourceVersions; every answer is (status, headers, body)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # object path -> object
        self.revision = 1000
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        # Every write that took a new resourceVersion, for watches: (revision, collection path, type, object).
        self.changes: list[tuple[int, str, str, dict[str, Any]]] = []

    def _record(self, collection: str, event_type: str, obj: dict[str, Any]) -> None:
        self.changes.append((int(obj["metadata"]["resourceVersion"]), collection, event_type, copy.deepcopy(obj)))
        self.changed.notify_all()

    def events_after(self, collection: str, rv: int) -> list[tuple[int, bytes]]:
        """Watch events of `collection` newer than `rv`, as the API server streams them (one JSON per line)."""
        with self.lock:
            return [
                (rev, json.dumps({"type": kind, "object": obj}).encode())
                for rev, path, kind, obj in self.changes
                if path == collection and rev > rv
            ]

    def _status(self, code: int, reason: str, message: str, plural: str, name: str) -> tuple[int, Any]:
        group, _, _, _ = STORED[plural]
        # The Status shape of the captured 409 (lease-update-conflict.json), with this request's names.
        body = captured_json("lease-update-conflict.json")
        body.update(message=message, reason=reason, code=code)
        body["details"] = {"name": name, "kind": plural} | ({"group": group} if group else {})
        return code, body

    def _conflict(self, plural: str, name: str) -> tuple[int, Any]:
        resource = STORED[plural][3]
        return self._status(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; please apply '
            "your changes to the latest version and try again",
            plural,
            name,
        )

    def _not_found(self, plural: str, name: str) -> tuple[int, Any]:
        return self._status(404, "NotFound", f'{STORED[plural][3]} "{name}" not found', plural, name)

    def _stamp(self, obj: dict[str, Any], *, changed_from: dict[str, Any] | None) -> dict[str, Any]:
        if changed_from is not None:
            before = {k: v for k, v in changed_from.items() if k != "metadata"}
            after = {k: v for k, v in obj.items() if k != "metadata"}
            meta_before = {k: v for k, v in changed_from["metadata"].items() if k != "resourceVersion"}
            meta_after = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
            if before == after and meta_before == meta_after:
                obj["metadata"]["resourceVersion"] = changed_from["metadata"]["resourceVersion"]
                return obj
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        return obj

    def handle(self, method: str, match: re.Match[str], body: Any, content_type: str) -> tuple[int, Any]:
        plural, namespace, name = match["plural"], match["namespace"], match["name"]
        _, api_version, kind, _ = STORED[plural]
        collection = f"/{match['prefix']}/namespaces/{namespace}/{plural}"
        with self.lock:
            if method == "GET" and name is None:
                items = [o for p, o in sorted(self.objects.items()) if p.rsplit("/", 1)[0] == collection]
                meta = {"resourceVersion": str(self.revision)}
                return 200, {"kind": kind + "List", "apiVersion": api_version, "metadata": meta, "items": items}
            if method == "POST" and name is None:
                if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
                    return self._status(400, "BadRequest", "the body is not an object", plural, "")
                name = str(body["metadata"].get("name", ""))
                path = f"{collection}/{name}"
                if path in self.objects:
                    return self._status(
                        409, "AlreadyExists", f'{STORED[plural][3]} "{name}" already exists', plural, name
                    )
                obj = copy.deepcopy(body)
                obj.update(kind=kind, apiVersion=api_version)
                obj["metadata"].update(
                    namespace=namespace,
                    uid=str(uuid.uuid4()),
                    creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                self.objects[path] = self._stamp(obj, changed_from=None)
                self._record(collection, "ADDED", obj)
                return 201, obj
            if name is None:
                return self._status(405, "MethodNotAllowed", f"{method} on a collection", plural, "")
            path = f"{collection}/{name}"
            stored = self.objects.get(path)
            if stored is None:
                return self._not_found(plural, name)
            if method == "GET":
                return 200, stored
            if method == "DELETE":
                del self.objects[path]
                self.revision += 1
                gone = copy.deepcopy(stored)
                gone["metadata"]["resourceVersion"] = str(self.revision)
                self._record(collection, "DELETED", gone)
                status = captured_json("lease-delete.json")
                status["details"] = {"name": name, "kind": plural, "uid": stored["metadata"]["uid"]}
                if STORED[plural][0]:
                    status["details"]["group"] = STORED[plural][0]
                return 200, status
            if method == "PATCH":
                if "json-patch" in content_type:
                    return self._status(415, "UnsupportedMediaType", "JSON patches are not doubled", plural, name)
                new = merge_patch(stored, body)
            elif method == "PUT":
                new = copy.deepcopy(body)
            else:
                return self._status(405, "MethodNotAllowed", method, plural, name)
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                return self._status(400, "BadRequest", "the body is not an object", plural, name)
            rv = new["metadata"].get("resourceVersion")
            if rv not in (None, "") and rv != stored["metadata"]["resourceVersion"]:
                return self._conflict(plural, name)
            new.update(kind=kind, apiVersion=api_version)
            for key in ("name", "namespace", "uid", "creationTimestamp"):
                new["metadata"][key] = stored["metadata"][key]
            before = stored["metadata"]["resourceVersion"]
            self.objects[path] = self._stamp(new, changed_from=stored)
            if new["metadata"]["resourceVersion"] != before:
                self._record(collection, "MODIFIED", new)
            return 200, new


class APIDouble:
    def __init__(self, scripts: dict[tuple[str, bool], list[Reply]]) -> None:
        """scripts: (path, is_watch) -> replies in order."""
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.log: list[tuple[str, bool, str | None, int]] = []  # (path, watch, resourceVersion, status)
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.store = ObjectStore()
        self.hang = 0.0  # seconds before a stored-object request is answered
        self.requests: list[tuple[str, str, int]] = []  # stored-object requests: (method, path, status)
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _stored(self, method: str) -> bool:
                """Answer a stored-object request; False when the path is not one (or a script claims it)."""
                url = urlsplit(self.path)
                match = OBJECT_PATH.match(url.path)
                if match is None or (url.path, False) in double.scripts or (url.path, True) in double.scripts:
                    return False
                if double.stopping.is_set() or double.stopping.wait(double.hang):
                    self.close_connection = True
                    return True
                query = parse_qs(url.query)
                if method == "GET" and match["name"] is None and query.get("watch", ["false"])[0] in ("true", "1"):
                    self._watch_stored(url.path, int(query.get("resourceVersion", ["0"])[0] or 0))
                    return True
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return True
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                status, answer = double.store.handle(method, match, body, self.headers.get("Content-Type", ""))
                double.requests.append((method, url.path, status))
                payload = json.dumps(answer).encode()
                self.send_response(status)
                captured = {201: "lease-create-l2guard.headers.txt", 200: "lease-update-renew.headers.txt"}
                for key, value in captured_headers(captured.get(status, "lease-update-conflict.headers.txt"))[1]:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return True

            def _watch_stored(self, collection: str, rv: int) -> None:
                """Stream the store's changes of `collection` after `rv`, then new ones as they happen, for up to
                WATCH_HOLD seconds; then end the stream like a server-side watch timeout."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                deadline = time.monotonic() + WATCH_HOLD
                try:
                    while not double.stopping.is_set() and time.monotonic() < deadline:
                        for rev, line in double.store.events_after(collection, rv):
                            chunk = line + b"\n"
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            rv = rev
                        self.wfile.flush()
                        with double.store.changed:
                            double.store.changed.wait(0.1)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True

            def do_POST(self) -> None:
                if not self._stored("POST"):
                    self.send_error(405)

            def do_PUT(self) -> None:
                if not self._stored("PUT"):
                    self.send_error(405)

            def do_PATCH(self) -> None:
                if not self._stored("PATCH"):
                    self.send_error(405)

            def do_DELETE(self) -> None:
                if not self._stored("DELETE"):
                    self.send_error(405)

            def do_GET(self) -> None:
                if self._stored("GET"):
                    return
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                watch = query.get("watch", ["false"])[0] in ("true", "1")
                rv = query.get("resourceVersion", [None])[0]
                reply = double._next(url.path, watch)
                double.log.append((url.path, watch, rv, reply.status))
                if double.stopping.wait(reply.delay):
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers:
                    self.send_header(key, value)
                if reply.events is None:
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for line in reply.events:
                        chunk = line + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    double.stopping.wait(reply.hold)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _next(self, path: str, watch: bool) -> Reply:
        with self._lock:
            script = self.scripts.get((path, watch))
            if not script:
                return Reply(status=404, body=b'{"kind":"Status","code":404}')
            return script.pop(0) if len(script) > 1 else script[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> APIDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering, like an API server that went away (idempotent)."""
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def wait_for(self, predicate: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out; requests: {self.log}"
            time.sleep(0.02)
