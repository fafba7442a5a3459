"""Review images fall back to links where the UI's viewers could not load them inline."""

from __future__ import annotations

from reelflow.render.review import review_images_inline


def test_inline_only_when_the_browser_can_reach_the_bucket() -> None:
    assert review_images_inline("127.0.0.1:8333", "http://127.0.0.1:4200/api")
    assert review_images_inline("localhost:8333", "http://127.0.0.1:4200/api")
    assert review_images_inline("minio.studio:9000", "http://minio.studio:4200/api")
    # the UI is served to other machines, the bucket only on this one's loopback: links
    assert not review_images_inline("127.0.0.1:8333", "https://prefect.studio/api")
    assert not review_images_inline("10.1.2.3:9000", "http://127.0.0.1:4200/api")
    # the setting overrides the guess both ways
    assert review_images_inline("127.0.0.1:8333", "https://prefect.studio/api", "inline")
    assert not review_images_inline("127.0.0.1:8333", "http://127.0.0.1:4200/api", "link")
