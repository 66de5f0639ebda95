"""A Hugging Face Hub stand-in on 127.0.0.1, for testing uploads and downloads offline.

`LocalHub` answers the few endpoints that `huggingface_hub` and `datasets` use to create a repo,
commit files (small files inline, as "regular" uploads), describe a repo and serve its files, so
that `push_to_hub` and `from_pretrained`/`load_dataset` on a repo id run their real code paths
with no network. Repos are plain folders under `root`; every commit replaces the files it names.

Clients pick it up from the environment, so point a subprocess at it:

    >>> with LocalHub(tmp_path) as hub:  # doctest: +SKIP
    ...     subprocess.run([...], env={**os.environ, **hub.environment()})

It is a test fixture, not a Hub: no auth, no LFS or Xet storage, no branches besides `main`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, unquote, urlparse

_REPO = r"(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
_API_ROUTES = [
    ("POST", re.compile(rf"^/api/{_REPO}/preupload/(?P<rev>[^/]+)$"), "_preupload"),
    ("POST", re.compile(rf"^/api/{_REPO}/commit/(?P<rev>[^/]+)$"), "_commit"),
    ("POST", re.compile(rf"^/api/{_REPO}/paths-info/(?P<rev>[^/]+)$"), "_paths_info"),
    ("GET", re.compile(rf"^/api/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"), "_tree"),
    ("GET", re.compile(rf"^/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "_info"),
]
# File downloads: `/<repo>/resolve/<rev>/<path>` for models, `/datasets/<repo>/resolve/...` for datasets.
_RESOLVE = re.compile(r"^/(?:(?P<type>datasets|spaces)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class LocalHub:
    """A Hub stand-in serving the repos kept under `root` (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests: list[tuple[str, str]] = []  # (method, path), for tests that check the traffic
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalHub is not running; use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_port}"

    def environment(self) -> dict[str, str]:
        """Environment variables that point `huggingface_hub` and `datasets` at this server."""
        return {"HF_ENDPOINT": self.endpoint, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                "HF_TOKEN": "hf_localhub", "HF_HUB_DISABLE_TELEMETRY": "1"}

    def repo_dir(self, repo_id: str, repo_type: str = "model") -> Path:
        """The folder holding a repo's files."""
        return self.root / f"{repo_type}s" / repo_id

    def __enter__(self) -> "LocalHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- repo state -----------------------------------------------------------------------------

    def _files(self, folder: Path) -> list[Path]:
        return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else []

    def _revision(self, folder: Path) -> str:
        """A commit id that changes whenever the repo's files do."""
        digest = hashlib.sha1()
        for path in self._files(folder):
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.stat().st_size.to_bytes(8, "little"))
            digest.update(str(path.stat().st_mtime_ns).encode())
        return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # -- plumbing -------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, value, headers: Optional[dict] = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, header in (headers or {}).items():
            self.send_header(name, header)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _not_found(self, what: str) -> None:
        self._json(404, {"error": f"{what} not found"}, {"X-Error-Code": "EntryNotFound"})

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        self.hub.requests.append((method, path))
        self.query = parse_qs(url.query)
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo()
        if method == "POST" and path == "/api/validate-yaml":
            self._body()
            return self._json(200, {"errors": [], "warnings": []})
        for route_method, pattern, handler in _API_ROUTES:
            match = pattern.match(path)
            if match and route_method == ("GET" if method == "HEAD" else method):
                repo_type = match.group("type")[:-1]
                folder = self.hub.repo_dir(match.group("repo"), repo_type)
                if not folder.is_dir():
                    return self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
                return getattr(self, handler)(match, folder, repo_type)
        match = _RESOLVE.match(path)
        if match and method in ("GET", "HEAD"):
            return self._resolve(match)
        self._json(404, {"error": f"LocalHub does not answer {method} {path}"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    # -- endpoints ------------------------------------------------------------------------------

    def _create_repo(self) -> None:
        request = json.loads(self._body())
        repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
        repo_type = request.get("type") or "model"
        folder = self.hub.repo_dir(repo_id, repo_type)
        if folder.is_dir():
            return self._json(409, {"error": "You already created this repo", "url": self._repo_url(repo_id, repo_type)})
        folder.mkdir(parents=True)
        self._json(200, {"url": self._repo_url(repo_id, repo_type), "name": repo_id})

    def _repo_url(self, repo_id: str, repo_type: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.hub.endpoint}/{prefix}{repo_id}"

    def _preupload(self, match, folder: Path, repo_type: str) -> None:
        files = json.loads(self._body())["files"]
        self._json(200, {"files": [{"path": item["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for item in files]})

    def _commit(self, match, folder: Path, repo_type: str) -> None:
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        with self.hub._lock:
            for line in lines:
                value = line["value"]
                if line["key"] == "file":
                    target = folder / value["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(base64.b64decode(value["content"]))
                elif line["key"] == "deletedFile":
                    (folder / value["path"]).unlink(missing_ok=True)
                elif line["key"] == "deletedFolder":
                    shutil.rmtree(folder / value["path"], ignore_errors=True)
                elif line["key"] != "header":
                    return self._json(400, {"error": f"LocalHub cannot commit {line['key']!r} entries (no LFS)"})
            revision = self.hub._revision(folder)
        self._json(200, {"commitUrl": f"{self._repo_url(match.group('repo'), repo_type)}/commit/{revision}",
                         "commitOid": revision, "success": True})

    def _entry(self, folder: Path, path: Path) -> dict:
        relative = path.relative_to(folder).as_posix()
        if path.is_dir():
            return {"type": "directory", "path": relative, "oid": "0" * 40}
        data = path.read_bytes()
        return {"type": "file", "path": relative, "size": len(data),
                "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}

    def _info(self, match, folder: Path, repo_type: str) -> None:
        revision = self.hub._revision(folder)
        siblings = [{"rfilename": path.relative_to(folder).as_posix(), "size": path.stat().st_size}
                    for path in self.hub._files(folder)]
        card = _card_data(folder / "README.md")
        self._json(200, {"id": match.group("repo"), "_id": match.group("repo"), "sha": revision, "private": False,
                         "siblings": siblings, "cardData": card, "tags": card.get("tags", []),
                         "lastModified": "2026-01-01T00:00:00.000Z", "disabled": False, "gated": False},
                   {"X-Repo-Commit": revision})

    def _tree(self, match, folder: Path, repo_type: str) -> None:
        base = folder / (match.group("path") or "")
        if not base.exists():
            return self._not_found(match.group("path"))
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        children = sorted(base.rglob("*") if recursive else base.iterdir())
        self._json(200, [self._entry(folder, path) for path in children])

    def _paths_info(self, match, folder: Path, repo_type: str) -> None:
        body = self._body()
        try:
            paths = json.loads(body)["paths"]
        except ValueError:
            paths = parse_qs(body.decode()).get("paths", [])
        self._json(200, [self._entry(folder, folder / path) for path in paths if (folder / path).exists()])

    def _resolve(self, match) -> None:
        repo_type = (match.group("type") or "models")[:-1]
        folder = self.hub.repo_dir(match.group("repo"), repo_type)
        path = folder / match.group("path")
        if not path.is_file():
            return self._not_found(match.group("path"))
        data = path.read_bytes()
        etag = hashlib.sha1(data).hexdigest()
        start, end, status = 0, len(data), 200
        ranged = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            first, last = ranged.groups()
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(len(data), int(last) + 1) if first and last else len(data)
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", self.hub._revision(folder))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data[start:end])


def _card_data(readme: Path) -> dict:
    """The YAML header of a repo's README, as the Hub reports it in `cardData`."""
    if not readme.is_file():
        return {}
    import yaml

    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    header = text.split("---", 2)[1]
    return yaml.safe_load(header) or {}
