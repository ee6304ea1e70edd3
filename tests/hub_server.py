"""A small Hub-protocol HTTP server on 127.0.0.1: huggingface_hub talks real HTTP to it via HF_ENDPOINT.

It answers the endpoints `create_repo`, `create_branch` and `upload_folder` use (repo create, branch,
preupload, commit; every file "regular", so contents arrive base64 in the commit), keeps what arrives
per repo and revision, and can be told to refuse the next commits (`fail_commits`). It serves what it keeps
to `hf_hub_download` (HEAD and GET of /{repo}/resolve/{revision}/{path}; a missing file or repo answers 404
with the Hub's X-Error-Code), so a test can also put files in `files` and download them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class HubState:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: list[dict] = []
        self.fail_commits = 0
        self.requests: list[str] = []


def _sha(content: bytes) -> str:
    return hashlib.sha1(content).hexdigest()


def _handler(state: HubState, endpoint: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, payload: dict | list, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_HEAD(self) -> None:
            self._resolve(body=False)

        def do_GET(self) -> None:
            self._resolve(body=True)

        def _resolve(self, body: bool) -> None:
            path = unquote(self.path.split("?")[0])
            state.requests.append(f"{self.command} {path}")
            tree = re.fullmatch(r"/api/models/(.+?/.+?)/tree/([^/]+)/?(.*)", path)
            if tree:  # list_repo_tree, which transformers' tokenizer loading calls
                files = state.files.get(tree.groups()[:2], {})
                prefix = f"{tree.group(3)}/" if tree.group(3) else ""
                under = [name for name in sorted(files) if name.startswith(prefix)]
                if not under:
                    return self._reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
                entries = [{"type": "file", "path": n, "size": len(files[n]), "oid": _sha(files[n])} for n in under]
                return self._reply(200, entries)
            match = re.fullmatch(r"/(.+?/.+?)/resolve/([^/]+)/(.+)", path)
            files = state.files.get(match.groups()[:2]) if match else None
            content = files.get(match.group(3)) if files is not None else None
            if content is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "RepoNotFound" if files is None else "EntryNotFound")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            self.send_response(200)
            snapshot = json.dumps({name: _sha(data) for name, data in sorted(files.items())})
            self.send_header("X-Repo-Commit", _sha(snapshot.encode()))
            self.send_header("ETag", f'"{_sha(content)}"')
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

        def do_POST(self) -> None:
            path = self.path.split("?")[0]
            state.requests.append(f"POST {path} auth={self.headers.get('authorization', '')}")
            body = self._body()
            if path == "/api/repos/create":
                info = json.loads(body)
                repo = (
                    f"{info.get('organization') or 'user'}/{info['name']}" if "/" not in info["name"] else info["name"]
                )
                state.repos.setdefault(
                    repo, {"visibility": info.get("visibility", "private" if info.get("private") else "public")}
                )
                return self._reply(200, {"url": f"{endpoint[0]}/{repo}", "name": repo})
            if path == "/api/validate-yaml":
                return self._reply(200, {})
            match = re.fullmatch(r"/api/models/(.+?/.+?)/(preupload|commit|branch)/(.+)", path)
            if not match:
                return self._reply(404, {"error": f"unknown endpoint {path}"})
            repo, action, revision = match.groups()
            if action == "branch":
                state.files.setdefault((repo, revision), dict(state.files.get((repo, "main"), {})))
                return self._reply(200, {})
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._reply(
                    200,
                    {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                )
            if state.fail_commits > 0:
                state.fail_commits -= 1
                return self._reply(403, {"error": "commit refused by test server"})
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            stored = state.files.setdefault((repo, revision), {})
            message = ""
            for line in lines:
                if line["key"] == "header":
                    message = line["value"]["summary"]
                elif line["key"] == "file":
                    stored[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            oid = f"{len(state.commits) + 1:040x}"
            state.commits.append({"repo": repo, "revision": revision, "message": message, "files": sorted(stored)})
            return self._reply(200, {"commitUrl": f"{endpoint[0]}/{repo}/commit/{oid}", "commitOid": oid})

    return Handler


def start() -> tuple[ThreadingHTTPServer, HubState, str]:
    state = HubState()
    endpoint: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, endpoint))
    endpoint.append(f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state, endpoint[0]
