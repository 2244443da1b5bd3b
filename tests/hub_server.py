"""A local stand-in for the Hugging Face Hub's upload endpoints, for tests (the real Hub cannot be reached from
here): point HF_ENDPOINT at it and huggingface_hub's own create_repo / upload_folder talk to it. It implements
just what they call (whoami, repo creation, the README's YAML check, preupload, commit), answers "regular" to
preupload so every file arrives inline in the commit, and records every request: method, path, headers, body,
and the files of each commit, decoded.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OWNER = "tester"


@dataclass
class Recorded:
    requests: list[dict] = field(default_factory=list)  # {"method", "path", "headers", "body"}
    created: list[dict] = field(default_factory=list)  # JSON payloads of /api/repos/create
    commits: list[dict] = field(default_factory=list)  # {"repo_type", "repo_id", "header", "files": {path: bytes}}


class HubServer:
    """`with HubServer(token) as hub:` serves on 127.0.0.1; hub.url is its address, hub.record what it got.
    Only requests that carry `Authorization: Bearer <token>` are served; others get 401, as on the Hub."""

    def __init__(self, token: str):
        self.token = token
        self.record = Recorded()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._handle(self, "GET")

            def do_POST(self):
                server._handle(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the endpoints ----------------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        path = h.path.split("?", 1)[0]
        self.record.requests.append({"method": method, "path": path, "headers": dict(h.headers), "body": body})
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._json(h, 401, {"error": "Invalid credentials in Authorization header"})
        if method == "GET" and path == "/api/whoami-v2":
            return self._json(h, 200, {"type": "user", "name": OWNER, "fullname": "Test User", "orgs": []})
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            self.record.created.append(payload)
            prefix = {"space": "spaces/", "dataset": "datasets/"}.get(payload.get("type"), "")
            owner = payload.get("organization") or OWNER
            return self._json(h, 200, {"url": f"{self.url}/{prefix}{owner}/{payload['name']}"})
        if method == "POST" and path == "/api/validate-yaml":
            return self._json(h, 200, {"errors": [], "warnings": []})
        m = re.fullmatch(r"/api/(models|spaces|datasets)/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if method == "POST" and m:
            kind, repo_id, action, _revision = m.groups()
            if action == "preupload":
                files = json.loads(body)["files"]
                answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                return self._json(h, 200, {"files": answer})
            return self._commit(h, kind[:-1], repo_id, body)
        return self._json(h, 404, {"error": f"not implemented here: {method} {path}"})

    def _commit(self, h, repo_type: str, repo_id: str, body: bytes) -> None:
        header, files = {}, {}
        for line in body.decode("utf-8").splitlines():
            item = json.loads(line)
            if item["key"] == "header":
                header = item["value"]
            elif item["key"] == "file":
                value = item["value"]
                assert value["encoding"] == "base64", value
                files[value["path"]] = base64.b64decode(value["content"])
        self.record.commits.append({"repo_type": repo_type, "repo_id": repo_id, "header": header, "files": files})
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        oid = f"{len(self.record.commits):040x}"
        self._json(
            h,
            200,
            {"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None},
        )

    @staticmethod
    def _json(h: BaseHTTPRequestHandler, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
