"""A Hugging Face Hub at the network edge only: huggingface_hub's own code runs, its HTTP client answers from here.

    with FakeHub(token="hf_write") as hub:      # huggingface_hub.set_client_factory(...) while inside
        HfApi(token="hf_write").upload_folder(...)
        hub.repos["user/name"].files("main")     # {path: bytes}

It serves what ``create_repo``, ``create_branch``, ``upload_folder`` (the README's YAML header checked; every file
sent inline: the preupload answer says "regular") and ``snapshot_download`` / ``hf_hub_download`` ask: repo info, the tree, and the files. Writes
need the token; reads do not (public repos). ``requests`` records every (method, path) asked.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx2
import huggingface_hub
import yaml
from huggingface_hub.utils import _http

ENDPOINT = "https://huggingface.co"


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    """Branch -> commit id."""
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    """Commit id -> its files."""
    messages: dict[str, str] = field(default_factory=dict)

    def files(self, revision: str) -> dict[str, bytes]:
        return self.commits[self.branches.get(revision, revision)]


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    def __init__(self, token: str = "hf_fake_write_token") -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []

    # ---- plumbing
    def __enter__(self) -> "FakeHub":
        huggingface_hub.set_client_factory(
            lambda: httpx2.Client(transport=httpx2.MockTransport(self.handle), follow_redirects=True,
                                  event_hooks={"request": [_http.hf_request_event_hook]}))
        return self

    def __exit__(self, *exc: Any) -> None:
        huggingface_hub.set_client_factory(_http.default_client_factory)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        routes = [
            ("POST", r"/api/repos/create", self.create),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<branch>.+)", self.branch),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>.+)", self.preupload),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>.+)", self.commit),
            ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>.+)", self.info),
            ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?P<sub>/.*)?", self.tree),
            ("(HEAD|GET)", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.resolve),
        ]
        for method, pattern, fn in routes:
            m = re.fullmatch(pattern, path)
            if m and re.fullmatch(method, request.method):
                args = {k: _unquote(v) for k, v in m.groupdict().items() if v is not None}
                return fn(request, **args)
        return _error(404, f"fake hub: no route for {request.method} {path}")

    def _writer(self, request: httpx2.Request) -> Optional[httpx2.Response]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "Invalid credentials in Authorization header")
        return None

    def _repo(self, repo: str, revision: Optional[str] = None) -> tuple[Optional[Repo], Optional[httpx2.Response]]:
        found = self.repos.get(repo)
        if found is None:
            return None, _error(404, "Repository not found", {"X-Error-Code": "RepoNotFound"})
        if revision is not None and revision not in found.branches and revision not in found.commits:
            return None, _error(404, f"Invalid rev id: {revision}", {"X-Error-Code": "RevisionNotFound"})
        return found, None

    # ---- writes
    def create(self, request: httpx2.Request) -> httpx2.Response:
        if (refused := self._writer(request)) is not None:
            return refused
        body = json.loads(request.content)
        repo = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if repo in self.repos:
            return _error(409, "You already created this model repo")
        empty = blob_id(b"")
        private = bool(body.get("private")) or body.get("visibility") == "private"
        self.repos[repo] = Repo(private, {"main": empty}, {empty: {}})
        return httpx2.Response(200, json={"url": f"{ENDPOINT}/{repo}", "name": repo, "id": repo})

    def validate_yaml(self, request: httpx2.Request) -> httpx2.Response:
        """The README's YAML header must parse to a mapping (the Hub checks more)."""
        content = json.loads(request.content)["content"]
        header = content.split("---")[1] if content.startswith("---") else ""
        try:
            ok = isinstance(yaml.safe_load(header), dict)
        except yaml.YAMLError:
            ok = False
        if not ok:
            return httpx2.Response(400, json={"errors": [{"message": "the metadata is not a YAML mapping"}]})
        return httpx2.Response(200, json={"errors": [], "warnings": []})

    def branch(self, request: httpx2.Request, repo: str, branch: str) -> httpx2.Response:
        if (refused := self._writer(request)) is not None:
            return refused
        found, missing = self._repo(repo)
        if missing:
            return missing
        if branch in found.branches:
            return _error(409, "Reference already exists")
        found.branches[branch] = found.branches["main"]
        return httpx2.Response(200, json={})

    def preupload(self, request: httpx2.Request, repo: str, rev: str) -> httpx2.Response:
        if (refused := self._writer(request)) is not None:
            return refused
        if (missing := self._repo(repo, rev)[1]) is not None:
            return missing
        files = json.loads(request.content)["files"]
        return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                    for f in files]})

    def commit(self, request: httpx2.Request, repo: str, rev: str) -> httpx2.Response:
        if (refused := self._writer(request)) is not None:
            return refused
        found, missing = self._repo(repo, rev)
        if missing:
            return missing
        lines = [json.loads(line) for line in request.content.splitlines() if line.strip()]
        files = dict(found.files(rev))
        message = ""
        for item in lines:
            if item["key"] == "header":
                message = item["value"]["summary"]
            elif item["key"] == "file":
                files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "deletedFile":
                files.pop(item["value"]["path"], None)
            else:
                return _error(400, f"fake hub: commit item {item['key']!r} is not served here")
        sha = hashlib.sha1(json.dumps({p: blob_id(d) for p, d in sorted(files.items())}).encode()
                           + found.branches[rev].encode()).hexdigest()
        found.commits[sha], found.messages[sha], found.branches[rev] = files, message, sha
        return httpx2.Response(200, json={"commitUrl": f"{ENDPOINT}/{repo}/commit/{sha}", "commitOid": sha,
                                          "pullRequestUrl": None})

    # ---- reads
    def info(self, request: httpx2.Request, repo: str, rev: str) -> httpx2.Response:
        found, missing = self._repo(repo, rev)
        if missing:
            return missing
        sha = found.branches.get(rev, rev)
        return httpx2.Response(200, json={"id": repo, "modelId": repo, "sha": sha, "private": found.private,
                                          "siblings": [{"rfilename": p} for p in sorted(found.commits[sha])]})

    def tree(self, request: httpx2.Request, repo: str, rev: str, sub: str = "") -> httpx2.Response:
        found, missing = self._repo(repo, rev)
        if missing:
            return missing
        return httpx2.Response(200, json=[{"type": "file", "oid": blob_id(d), "size": len(d), "path": p}
                                          for p, d in sorted(found.files(rev).items())])

    def resolve(self, request: httpx2.Request, repo: str, rev: str, file: str) -> httpx2.Response:
        found, missing = self._repo(repo, rev)
        if missing:
            return missing
        sha = found.branches.get(rev, rev)
        data = found.commits[sha].get(file)
        if data is None:
            return _error(404, "Entry not found", {"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{blob_id(data)}"', "Content-Length": str(len(data))}
        return httpx2.Response(200, headers=headers, content=b"" if request.method == "HEAD" else data)


def _error(status: int, message: str, headers: Optional[dict[str, str]] = None) -> httpx2.Response:
    return httpx2.Response(status, json={"error": message}, headers={"X-Error-Message": message, **(headers or {})})


def _unquote(text: str) -> str:
    from urllib.parse import unquote

    return unquote(text)
