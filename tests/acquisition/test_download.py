"""`mpds download` against a real HTTP server on 127.0.0.1: images, faults, resume and shards."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from mpds.acquisition.download import (
    DownloadConfig,
    DownloadError,
    Downloader,
    download_release,
    read_status,
)
from mpds.commands import download as download_command
from mpds.commands.arguments import shard

FAST = dict(backoff=0.001, max_backoff=0.01, progress=False)


def statuses(raw: Path, name: str = "download_status.jsonl") -> dict[str, dict]:
    lines = (raw / name).read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines]
    assert len({entry["key"] for entry in entries}) == len(entries), "a key appears twice in the status file"
    return {entry["key"]: entry for entry in entries}


def fetch_one(release, server, *replies, config=None, **kwargs):
    """Download one poster served by `replies`; its status entry and the raw folder."""
    url = server.route("/p/1.jpg", *replies)
    raw = release([{"id": 1, "poster-url": url}])
    download_release(raw, config or DownloadConfig(**FAST), **kwargs)
    return statuses(raw)["poster:1"], raw


# -- the layout -----------------------------------------------------------------------------------


def test_fills_the_raw_layout_with_the_bytes_served(served_release):
    raw, served = served_release(num_posters=12, num_actors=3)
    download_release(raw, DownloadConfig(workers=4, **FAST))
    entries = statuses(raw)
    ok = [entry for entry in entries.values() if entry["status"] == "ok"]
    assert ok, "nothing was downloaded"
    for entry in ok:
        name = entry["file"].split("/")[-1]
        assert (raw / entry["file"]).read_bytes() == served[f"/{entry['file'].split('/')[0]}/{name}"]
    photos = sorted(path.name for path in (raw / "actors").iterdir())
    assert photos[:3] == ["100_0.jpg", "100_1.jpg", "100_2.jpg"]


def test_every_row_ends_in_the_status_file_with_its_reason(served_release):
    raw, _ = served_release(num_posters=12, num_actors=3)
    download_release(raw, DownloadConfig(workers=4, **FAST))
    entries = statuses(raw)
    by_key = {key: (entry["status"], entry["reason"]) for key, entry in entries.items()}
    # The synthetic release's faults, on fixed rows (see mpds.testing.synthetic._add_faults).
    assert by_key["poster:1003"] == ("failed", "image_too_small")
    assert by_key["poster:1006"] == ("failed", "image_undecodable")
    assert by_key["poster:1009"] == ("failed", "http_404")
    assert by_key["poster:1012"] == ("skipped", "excluded_genre")
    assert by_key["meta.csv:row:13"] == ("skipped", "duplicate_id")
    assert by_key["meta.csv:row:14"] == ("skipped", "invalid_id")
    meta_rows = len((raw / "meta.csv").read_text().splitlines()) - 1
    assert len([entry for entry in entries.values() if entry["source"] == "meta.csv"]) == meta_rows
    actor_rows = len((raw / "actors.csv").read_text().splitlines()) - 1
    actor_rows_seen = {entry["row"] for entry in entries.values() if entry["source"] == "actors.csv"}
    assert actor_rows_seen == set(range(1, actor_rows + 1))
    assert not (raw / "posters" / "1012.jpg").exists()


def test_the_adult_title_is_never_requested(served_release, server):
    raw, _ = served_release(num_posters=12, num_actors=0)
    download_release(raw, DownloadConfig(**FAST))
    assert "/posters/1012.jpg" not in server.hits
    assert server.hits["/posters/1000.jpg"] == 1


# -- faults, one per test -------------------------------------------------------------------------


def test_404_fails_without_a_retry(release, server, images):
    entry, raw = fetch_one(release, server, server.reply(404, b"gone"), server.reply(200, images.poster(1)))
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("failed", "http_404", 1)
    assert server.hits["/p/1.jpg"] == 1
    assert not (raw / "posters" / "1.jpg").exists()


def test_500_then_success_is_retried(release, server, images):
    body = images.poster(1)
    entry, raw = fetch_one(release, server, server.reply(500, b"oops"), server.reply(200, body))
    assert (entry["status"], entry["attempts"]) == ("ok", 2)
    assert (raw / "posters" / "1.jpg").read_bytes() == body


def test_5xx_every_time_fails_after_the_retries(release, server):
    entry, _ = fetch_one(release, server, server.reply(503, b"busy"), config=DownloadConfig(retries=2, **FAST))
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("failed", "http_503", 3)


def test_429_waits_as_long_as_retry_after_says(release, server, images):
    waits = []

    async def record(seconds):
        waits.append(seconds)

    replies = [server.reply(429, b"slow down", {"Retry-After": "7"}), server.reply(200, images.poster(1))]
    entry, _ = fetch_one(release, server, *replies, sleep=record)
    assert (entry["status"], entry["attempts"]) == ("ok", 2)
    assert waits == [7.0]


def test_retry_after_beyond_the_limit_fails_for_this_run(release, server):
    config = DownloadConfig(max_retry_after=60, **FAST)
    entry, _ = fetch_one(release, server, server.reply(429, b"later", {"Retry-After": "3600"}), config=config)
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("failed", "http_429", 1)


def test_backoff_grows_between_retries(release, server):
    waits = []

    async def record(seconds):
        waits.append(seconds)

    config = DownloadConfig(retries=3, backoff=1.0, max_backoff=100, progress=False)
    fetch_one(release, server, server.reply(500, b"oops"), config=config, sleep=record)
    # 1, 2, 4 seconds, each plus up to 1 s of jitter.
    assert [int(wait) for wait in waits] == [1, 2, 4]


def test_a_response_slower_than_the_timeout_fails(release, server, images):
    config = DownloadConfig(timeout=0.2, retries=1, **FAST)
    entry, raw = fetch_one(release, server, server.reply(200, images.poster(1), hold=True), config=config)
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("failed", "timeout", 2)
    assert not (raw / "posters" / "1.jpg").exists()


def test_a_truncated_body_is_retried_then_fails(release, server, images):
    body = images.poster(1)
    config = DownloadConfig(retries=1, **FAST)
    entry, raw = fetch_one(release, server, server.reply(200, body, truncate_to=len(body) // 2), config=config)
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("failed", "incomplete_body", 2), entry["detail"]
    assert not list(raw.rglob("1.jpg*"))


def test_a_truncated_file_served_whole_is_undecodable(release, server, images):
    body = images.poster(1)
    entry, _ = fetch_one(release, server, server.reply(200, body[: len(body) * 2 // 3]))
    assert (entry["status"], entry["reason"]) == ("failed", "image_undecodable")


def test_html_instead_of_an_image(release, server):
    page = b"<!doctype html><html><body>" + b"<p>Sign in to see this poster</p>" * 400 + b"</body></html>"
    entry, raw = fetch_one(release, server, server.reply(200, page, {"Content-Type": "text/html"}))
    assert (entry["status"], entry["reason"]) == ("failed", "not_an_image")
    assert "text/html" in entry["detail"]
    assert not (raw / "posters" / "1.jpg").exists()


def test_a_4kb_image_is_too_small(release, server, images):
    body = images.noise(60, 60, "JPEG", quality=90)
    assert 4000 < len(body) < 5 * 1024
    entry, _ = fetch_one(release, server, server.reply(200, body))
    assert (entry["status"], entry["reason"]) == ("failed", "image_too_small")


def test_a_body_over_max_bytes_is_refused(release, server, images):
    body = images.noise(400, 400, "JPEG")
    assert len(body) > 100_000
    entry, raw = fetch_one(release, server, server.reply(200, body), config=DownloadConfig(max_bytes=100_000, **FAST))
    assert (entry["status"], entry["reason"], entry["attempts"]) == ("failed", "body_too_large", 1)
    assert not (raw / "posters" / "1.jpg").exists()


def test_an_image_over_the_pixel_limit_is_refused(release, server, images):
    config = DownloadConfig(max_pixels=200 * 200, **FAST)
    entry, _ = fetch_one(release, server, server.reply(200, images.noise(300, 300, "JPEG")), config=config)
    assert (entry["status"], entry["reason"]) == ("failed", "image_too_large")


def test_an_image_over_pillows_own_limit_is_refused_from_a_worker_thread(release, server, images, monkeypatch):
    """Pillow only warns between its limit and twice it; the warning must count as a refusal."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 200)
    config = DownloadConfig(max_pixels=10**9, **FAST)
    entry, _ = fetch_one(release, server, server.reply(200, images.noise(250, 250, "JPEG")), config=config)
    assert (entry["status"], entry["reason"]) == ("failed", "image_too_large")


def test_the_check_rejects_truncated_and_cut_bodies_and_accepts_whole_ones(images, tmp_path):
    downloader = Downloader(tmp_path, DownloadConfig(progress=False))
    body = images.noise(300, 300, "JPEG")
    assert downloader.check_body(body, "image/jpeg") == (body, None, "JPEG")
    for cut in (len(body) // 2, len(body) - 100):
        data, (reason, _), _ = downloader.check_body(body[:cut], "image/jpeg")
        assert (data, reason) == (None, "image_undecodable")
    png = images.noise(300, 300, "PNG")
    assert downloader.check_body(png[: len(png) - 1000], "image/png")[1][0] == "image_undecodable"


def test_checks_in_many_threads_leave_the_warning_filters_as_they_were(images, tmp_path):
    downloader = Downloader(tmp_path, DownloadConfig(progress=False))
    bodies = [images.poster(seed) for seed in range(8)] * 25
    before = list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        problems = list(pool.map(lambda body: downloader.check_body(body, "image/jpeg")[1], bodies))
    assert problems == [None] * len(bodies)
    assert warnings.filters == before


def test_a_redirect_to_file_is_refused(release, server):
    entry, raw = fetch_one(release, server, server.reply(302, b"", {"Location": "file:///etc/passwd"}))
    assert (entry["status"], entry["reason"]) == ("failed", "unsafe_redirect")
    assert not (raw / "posters" / "1.jpg").exists()


def test_a_redirect_to_http_is_followed(release, server, images):
    body = images.poster(2)
    server.route("/elsewhere/2.jpg", server.reply(200, body))
    entry, raw = fetch_one(release, server, server.reply(301, b"", {"Location": "/elsewhere/2.jpg"}))
    assert entry["status"] == "ok"
    assert (raw / "posters" / "1.jpg").read_bytes() == body


def test_a_url_that_is_not_http_is_never_fetched(release):
    raw = release([{"id": 1, "poster-url": "file:///etc/passwd"}, {"id": 2, "poster-url": "ftp://example.org/2.jpg"}])
    download_release(raw, DownloadConfig(**FAST))
    entries = statuses(raw)
    assert entries["poster:1"]["reason"] == entries["poster:2"]["reason"] == "unsupported_scheme"
    assert entries["poster:1"]["status"] == "failed"


def test_a_png_is_saved_as_jpeg(release, server, images):
    entry, raw = fetch_one(release, server, server.reply(200, images.noise(200, 300, "PNG")))
    assert (entry["status"], entry["converted_from"]) == ("ok", "PNG")
    with Image.open(raw / "posters" / "1.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (200, 300))


def test_a_row_without_url_is_recorded(release):
    raw = release([{"id": 1, "poster-url": ""}])
    download_release(raw, DownloadConfig(**FAST))
    assert statuses(raw)["poster:1"]["reason"] == "no_url"


def test_no_more_requests_in_flight_to_one_host_than_per_host(release, server, images):
    """Each reply takes 0.3 s, so without the limit all six requests would be in flight at once."""
    body = images.poster(1)
    slow = server.reply(200, body, hold_for=0.3)
    raw = release([{"id": number, "poster-url": server.route(f"/p/{number}.jpg", slow)} for number in range(1, 7)])
    download_release(raw, DownloadConfig(workers=6, per_host=2, **FAST))
    assert server.most_in_flight == 2
    assert [entry["status"] for entry in statuses(raw).values()] == ["ok"] * 6


def test_the_proxy_of_the_environment_is_used(release, server, images, monkeypatch):
    """The loopback server stands in for the proxy: it receives the poster's absolute URL."""
    body = images.poster(1)
    server.route("http://posters.invalid/p/1.jpg", server.reply(200, body))
    monkeypatch.setenv("HTTP_PROXY", server.base)
    raw = release([{"id": 1, "poster-url": "http://posters.invalid/p/1.jpg"}])
    download_release(raw, DownloadConfig(**FAST))
    assert statuses(raw)["poster:1"]["status"] == "ok"
    assert (raw / "posters" / "1.jpg").read_bytes() == body


def test_no_proxy_bypasses_the_proxy(release, server, images, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    entry, _ = fetch_one(release, server, server.reply(200, images.poster(1)))
    assert entry["status"] == "ok"


def test_netrc_credentials_are_sent_to_their_host(release, server, images, monkeypatch, tmp_path):
    (tmp_path / "netrc").write_text("machine 127.0.0.1 login reader password secret\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    entry, _ = fetch_one(release, server, server.reply(200, images.poster(1)))
    assert entry["status"] == "ok"
    assert server.authorization["/p/1.jpg"] == "Basic cmVhZGVyOnNlY3JldA=="  # reader:secret


def test_credentials_in_the_url_win_over_netrc(release, server, images, monkeypatch, tmp_path):
    (tmp_path / "netrc").write_text("machine 127.0.0.1 login reader password secret\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    server.route("/p/1.jpg", server.reply(200, images.poster(1)))
    raw = release([{"id": 1, "poster-url": server.base.replace("http://", "http://owner:key@") + "/p/1.jpg"}])
    download_release(raw, DownloadConfig(**FAST))
    assert statuses(raw)["poster:1"]["status"] == "ok"
    assert server.authorization["/p/1.jpg"] == "Basic b3duZXI6a2V5"  # owner:key


# -- resuming -------------------------------------------------------------------------------------


def test_a_second_run_skips_what_is_done_and_retries_what_failed(release, server, images):
    good, flaky = images.poster(1), images.poster(2)
    rows = [{"id": 1, "poster-url": server.route("/p/1.jpg", server.reply(200, good))},
            {"id": 2, "poster-url": server.route("/p/2.jpg", server.reply(404, b"not yet"), server.reply(200, flaky))}]
    raw = release(rows)
    download_release(raw, DownloadConfig(**FAST))
    assert statuses(raw)["poster:2"]["reason"] == "http_404"
    download_release(raw, DownloadConfig(**FAST))
    entries = statuses(raw)
    assert server.hits == {"/p/1.jpg": 1, "/p/2.jpg": 2}
    assert [entry["status"] for entry in entries.values()] == ["ok", "ok"]
    assert (raw / "posters" / "2.jpg").read_bytes() == flaky


def test_a_file_already_on_disk_counts_as_done(release, server, images):
    raw = release([{"id": 1, "poster-url": server.route("/p/1.jpg", server.reply(200, images.poster(1)))}])
    (raw / "posters").mkdir()
    (raw / "posters" / "1.png").write_bytes(images.noise(100, 150, "PNG"))
    download_release(raw, DownloadConfig(**FAST))
    assert statuses(raw)["poster:1"]["status"] == "exists"
    assert "/p/1.jpg" not in server.hits


def test_an_image_left_empty_or_too_small_on_disk_is_fetched_again(release, server, images):
    poster = images.poster(1)
    raw = release([{"id": 1, "poster-url": server.route("/p/1.jpg", server.reply(200, poster))},
                   {"id": 2, "poster-url": server.route("/p/2.jpg", server.reply(200, images.poster(2)))}])
    (raw / "posters").mkdir()
    (raw / "posters" / "1.jpg").write_bytes(b"")  # what a power loss can leave behind
    (raw / "posters" / "2.jpg").write_bytes(images.poster(2))
    download_release(raw, DownloadConfig(**FAST))
    assert {key: entry["status"] for key, entry in statuses(raw).items()} == {"poster:1": "ok", "poster:2": "exists"}
    assert server.hits == {"/p/1.jpg": 1}
    assert (raw / "posters" / "1.jpg").read_bytes() == poster


def test_a_temporary_file_left_by_a_killed_run_is_removed(release, server, images):
    raw = release([{"id": 1, "poster-url": server.route("/p/1.jpg", server.reply(404, b"gone"))}])
    (raw / "posters").mkdir()
    (raw / "posters" / "1.jpg.part").write_bytes(b"\xff\xd8 half a poster")
    download_release(raw, DownloadConfig(**FAST))
    assert sorted(os.listdir(raw / "posters")) == []


def test_a_status_line_cut_short_is_ignored(release, server, images):
    raw = release([{"id": 1, "poster-url": server.route("/p/1.jpg", server.reply(200, images.poster(1)))}])
    (raw / "download_status.jsonl").write_text('{"key": "poster:1", "status": "o', encoding="utf-8")
    download_release(raw, DownloadConfig(**FAST))
    assert statuses(raw)["poster:1"]["status"] == "ok"


_CHILD = """
import sys
from mpds.acquisition.download import DownloadConfig, download_release
download_release(sys.argv[1], DownloadConfig(workers=4, per_host=4, progress=False))
"""


def test_a_run_killed_halfway_then_restarted_ends_like_an_uninterrupted_run(served_release, server):
    """The kill is a real SIGKILL of a child process, at a deterministic point: the server answers the
    first 6 requests, then sends half of each later body and holds it; once all 4 workers hold a
    half body (so each has stored its previous image), the child is killed."""
    reference, served = served_release(num_posters=16, num_actors=2, name="reference")
    download_release(reference, DownloadConfig(workers=4, **FAST))

    raw, _ = served_release(num_posters=16, num_actors=2, name="killed")
    server.hits.clear()
    held_after = 6
    for path, body in served.items():
        # The first six poster URLs in file order are answered; the rest are held halfway.
        held = path not in [f"/posters/{1000 + 3 * index}.jpg" for index in range(held_after)]
        server.route(path, server.reply(200, body, hold_after_half=held), server.reply(200, body))
    paths = [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(raw)], env=env)
    try:
        for _ in range(4):
            assert server.held.acquire(timeout=60), "the child never reached the held responses"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    server.gate.set()

    def images_in(root):
        return {str(path.relative_to(root)): path.read_bytes()
                for path in sorted(root.rglob("*")) if path.is_file() and "/" in str(path.relative_to(root))}

    # Killed: some images are there, complete; nothing half-written under a final name.
    partial = images_in(raw)
    assert 0 < len(partial) < len(images_in(reference))
    assert all(not name.endswith(".part") for name in partial)
    assert all(partial[name] == (reference / name).read_bytes() for name in partial)

    download_release(raw, DownloadConfig(workers=4, **FAST))
    assert images_in(raw) == images_in(reference)
    summary = lambda root: {key: (entry["status"], entry["reason"], entry["bytes"])  # noqa: E731
                            for key, entry in statuses(root).items()}
    assert summary(raw) == summary(reference)
    assert list(statuses(raw)) == list(statuses(reference))


# -- shards and the command -----------------------------------------------------------------------


def test_shards_split_the_rows_without_overlap(served_release):
    raw, _ = served_release(num_posters=12, num_actors=3)
    download_release(raw, DownloadConfig(shard=(0, 2), **FAST))
    download_release(raw, DownloadConfig(shard=(1, 2), **FAST))
    first = statuses(raw, "download_status.shard-0-of-2.jsonl")
    second = statuses(raw, "download_status.shard-1-of-2.jsonl")
    assert first and second and not set(first) & set(second)
    whole, _ = served_release(num_posters=12, num_actors=3, name="whole")
    download_release(whole, DownloadConfig(**FAST))
    assert set(first) | set(second) == set(statuses(whole))
    actor_shards = {entry["id"]: key in first for key, entry in {**first, **second}.items() if entry["kind"] == "actor"}
    assert len(actor_shards) == 3  # all photos of one actor are in one shard


@pytest.mark.parametrize("text", ["4/4", "5/4", "1/0", "half", ""])
def test_a_bad_shard_is_a_clear_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="shard"):
        shard(text)


def test_a_shard_outside_its_count_is_refused_by_the_config():
    with pytest.raises(DownloadError, match="0 <= i < N"):
        DownloadConfig(shard=(2, 2))


def _command(argv):
    parser = argparse.ArgumentParser(prog="mpds")
    download_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_the_command_downloads_and_prints_a_summary(served_release, capsys):
    raw, _ = served_release(num_posters=12, num_actors=0)
    assert _command(["download", str(raw), "--workers", "4", "--backoff", "0.001", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "image_too_small" in out and "download_status.jsonl" in out
    assert read_status(raw / "download_status.jsonl")["poster:1000"]["status"] == "ok"


def test_the_command_explains_a_folder_that_is_not_a_release(tmp_path, capsys):
    assert _command(["download", str(tmp_path), "--no-progress"]) == 2
    assert "meta.csv is missing" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("workers", 0), ("per_host", 0), ("timeout", 0), ("retries", -1),
                                           ("max_bytes", 0)])
def test_a_bad_option_is_a_clear_error(option, value):
    with pytest.raises(DownloadError, match=option):
        DownloadConfig(**{option: value})
