"""Reruns keep what they have (issue 21 #2): an image stored by an earlier run is not
downloaded again (``--force`` included) unless ``images.refetch``, and a post never loses an
image because the origin purged it (Mastodon instances purge cached remote media: 404)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from werkzeug import Request, Response

from mmnerd.images.fetch import FetchStage
from mmnerd.images.stored import INDEX
from mmnerd.pipeline import Runner, iter_stage, seed_stage
from mmnerd.records import ImageRef, Post


def jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


class Origin:
    """Image URLs that answer 200 until purged, then 404 (as a purged media cache)."""

    def __init__(self, httpserver, names: list[str]):
        self.bodies = {f"/media/{n}.jpg": jpeg((40 * i, 90, 200)) for i, n in enumerate(names)}
        self.purged = False
        self.hits: list[str] = []
        for path in self.bodies:
            httpserver.expect_request(path).respond_with_handler(self.handle)
        self.url = lambda n: httpserver.url_for(f"/media/{n}.jpg")

    def handle(self, request: Request) -> Response:
        self.hits.append(request.path)
        if self.purged:
            return Response("Not Found", 404)
        return Response(self.bodies[request.path], 200, content_type="image/jpeg")


@pytest.fixture
def origin(httpserver, config):
    config.images.allow_hosts = ["localhost", "127.0.0.1"]
    config.images.timeout = 2
    origin = Origin(httpserver, ["a", "b"])
    posts = [
        Post(id=f"t:{n}", source="t", source_id=n, text="x", image=ImageRef(url=origin.url(n)))
        for n in ("a", "b")
    ]
    seed_stage(config, "tokenize", posts)
    return origin


def fetched(config) -> dict[str, ImageRef]:
    return {p.id: p.image for p in iter_stage(config, "fetch") if p.image is not None}


def test_force_rerun_reuses_stored_images_after_the_origin_purged_them(config, origin):
    first = Runner(config).run_stage(FetchStage())
    assert first.items_out == 2 and sorted(origin.hits) == ["/media/a.jpg", "/media/b.jpg"]
    before = fetched(config)
    assert (config.root / INDEX).exists()

    origin.purged, origin.hits = True, []
    again = Runner(config).run_stage(FetchStage(), force=True)  # what `mmnerd collect --force` does
    assert origin.hits == []  # nothing downloaded again
    assert again.items_out == 2 and again.flagged["image_reused"] == 2
    assert fetched(config) == before  # same sha256, path, size, type: byte-identical records


def test_refetch_downloads_again_and_keeps_the_stored_copy_when_the_origin_fails(config, origin):
    Runner(config).run_stage(FetchStage())
    before = fetched(config)
    origin.purged, origin.hits = True, []
    config.images.refetch = True
    stats = Runner(config).run_stage(FetchStage())  # refetch changes the fingerprint: reruns
    assert sorted(origin.hits) == ["/media/a.jpg", "/media/b.jpg"]  # asked for
    assert stats.items_out == 2 and stats.flagged["image_kept"] == 2  # no post lost its image
    after = fetched(config)
    for pid, ref in after.items():
        assert (ref.status, ref.sha256, ref.path) == ("ok", before[pid].sha256, before[pid].path)
        assert ref.reason.startswith("stored copy kept; the origin answered http_404")


def test_a_missing_stored_file_or_other_options_mean_downloading_again(config, origin):
    Runner(config).run_stage(FetchStage())
    a = fetched(config)["t:a"]
    (config.root / "images" / a.path).unlink()  # the store lost one file
    origin.hits = []
    Runner(config).run_stage(FetchStage(), force=True)
    assert origin.hits == ["/media/a.jpg"]  # only the one whose bytes are gone
    assert fetched(config)["t:a"].sha256 == a.sha256

    origin.hits = []
    config.images.store = "original"  # stored bytes would differ: not reused
    Runner(config).run_stage(FetchStage())
    assert sorted(origin.hits) == ["/media/a.jpg", "/media/b.jpg"]
