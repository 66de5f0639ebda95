"""A real HTTP server on 127.0.0.1 for the download tests, with scripted responses per path."""

from __future__ import annotations

import csv
import io
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from mpds.testing.synthetic import SyntheticPoster, draw_poster, jpeg_bytes


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client drops a kept-alive connection (the downloader does, on purpose, after
    a body that is too large or too slow); any other error of a request is printed as usual."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@dataclass
class Reply:
    """One scripted response. `truncate_to` sends only that many body bytes after a full Content-Length;
    `hold` waits on the server's gate (until released) before answering, `hold_after` after half the body."""

    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    truncate_to: Optional[int] = None
    hold: bool = False
    hold_after_half: bool = False
    hold_for: Optional[float] = None  # answer after this many seconds (or when the gate opens)


class LoopbackServer:
    """Serves `routes[path]`: a list of replies used in turn, the last one repeated."""

    def __init__(self):
        self.routes: dict[str, list[Reply]] = {}
        self.hits: dict[str, int] = {}
        self.authorization: dict[str, Optional[str]] = {}  # the Authorization header of each path's last request
        self.gate = threading.Event()  # held replies wait for this
        self.held = threading.Semaphore(0)  # released once per reply that starts waiting at the gate
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with server.lock:
                    count = server.hits.get(self.path, 0)
                    server.hits[self.path] = count + 1
                    server.authorization[self.path] = self.headers.get("Authorization")
                replies = server.routes.get(self.path) or [Reply(404, b"not found")]
                reply = replies[min(count, len(replies) - 1)]
                with server.lock:
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    self._answer(reply)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, reply):
                try:
                    if reply.hold_for is not None:
                        server.gate.wait(reply.hold_for)
                    if reply.hold:
                        server.held.release()
                        server.gate.wait(30)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if reply.hold_after_half:
                        self.wfile.write(reply.body[: len(reply.body) // 2])
                        self.wfile.flush()
                        server.held.release()
                        server.gate.wait(30)
                        self.close_connection = True
                        return
                    if reply.truncate_to is not None:
                        self.wfile.write(reply.body[: reply.truncate_to])
                        self.close_connection = True
                        return
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    reply = staticmethod(Reply)

    def route(self, path: str, *replies: Reply) -> str:
        self.routes[path] = list(replies)
        return self.url(path)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The downloader honours proxy variables; the loopback server must be reached directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    loopback = LoopbackServer()
    loopback.thread.start()
    yield loopback
    loopback.gate.set()
    loopback.httpd.shutdown()
    loopback.httpd.server_close()


@pytest.fixture
def images():
    """Helpers that draw test images: `images.poster(seed)` and `images.noise(width, height, format)`."""

    class Images:
        poster = staticmethod(poster_jpeg)
        noise = staticmethod(image_bytes)

    return Images


@pytest.fixture
def release(tmp_path):
    """`release(rows)` writes meta.csv under a fresh folder and returns the folder."""
    return lambda rows, name="raw": write_meta(tmp_path / name, rows)


def poster_jpeg(seed: int, size=(240, 360)) -> bytes:
    """A synthetic poster as JPEG bytes (15-30 KB at the default size)."""
    poster = SyntheticPoster("blue", "orange", "circle", f"Film {seed}", ["Ava Stone"])
    return jpeg_bytes(draw_poster(poster, size, seed=seed))


def image_bytes(width: int, height: int, image_format: str, seed: int = 0, quality: int = 90) -> bytes:
    """A noisy picture (so that it does not compress below the size we ask for)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    kwargs = {"quality": quality} if image_format == "JPEG" else {}
    Image.fromarray(pixels).save(buffer, format=image_format, **kwargs)
    return buffer.getvalue()


def write_meta(root: Path, rows: list[dict]) -> Path:
    """meta.csv with the columns of the release; each row gives at least id and poster-url."""
    root.mkdir(parents=True, exist_ok=True)
    columns = ["id", "movie-url", "title", "genres", "actors", "poster-url", "synopsis"]
    with open(root / "meta.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({"title": f"Film {row['id']}", "genres": "['Drama']", **row})
    return root


@pytest.fixture
def served_release(server, tmp_path):
    """`served_release(num_posters, num_actors, name)`: a synthetic release (with the real set's faults)
    whose URLs point at the loopback server, which serves the synthetic images. Returns the raw folder,
    with no image in it yet, and `{url path: bytes served}`."""
    from mpds.data.raw import RawRelease
    from mpds.testing.synthetic import make_raw_release

    def build(num_posters: int = 12, num_actors: int = 3, name: str = "raw"):
        source = make_raw_release(tmp_path / f"{name}-source", num_posters, num_actors, seed=1)
        raw = tmp_path / name
        raw.mkdir()
        served = {}
        for csv_name in ("meta.csv", "posters.csv", "actors.csv"):
            text = (source / csv_name).read_text(encoding="utf-8")
            (raw / csv_name).write_text(text.replace("https://img.example.org/", server.base + "/"), encoding="utf-8")
        for path in sorted((source / "posters").iterdir()):
            served[f"/posters/{path.name}"] = path.read_bytes()
        for actor_id, paths in RawRelease(source).actor_photo_paths().items():
            for k, path in enumerate(paths):
                served[f"/actors/{actor_id}_{k}.jpg"] = path.read_bytes()
        for path, body in served.items():
            server.route(path, Reply(200, body, {"Content-Type": "image/jpeg"}))
        return raw, served

    return build
