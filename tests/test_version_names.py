"""Version names: every setting that makes two versions differ is in the name, so no version
overwrites another in the bucket, the manifest or `--out` (no ffmpeg, no server)."""

from __future__ import annotations

import itertools

from reelflow.render.jobs import ExportSpec, parse_export


def test_every_distinct_version_has_its_own_name() -> None:
    options = {
        "aspect": ["16:9", "9:16", "1:1"],
        "codec": ["h264", "h265"],
        "fps": [None, 60],
        "size": [None, (720, 1280)],  # None: the preset's 1080x1920
        "denoise": [None, "hqdn3d", "nlmeans"],
        "captions": ["burn", "soft", "none"],
        "cut": ["storyboard", "fast"],
    }
    names: dict[str, ExportSpec] = {}
    for values in itertools.product(*options.values()):
        fields = dict(zip(options, values, strict=True))
        if fields["size"] and fields["aspect"] != "9:16":
            continue  # a size must fit the aspect
        spec = ExportSpec(**fields)
        assert spec.name not in names, (spec, names.get(spec.name))
        names[spec.name] = spec
    assert len(names) == 3 * 2 * 2 * 3 * 3 * 2 + 2 * 2 * 3 * 3 * 2


def test_the_same_version_asked_twice_has_one_name() -> None:
    assert parse_export("9:16").name == parse_export("9:16,captions=burn,codec=h264").name
    assert parse_export("9:16").name == "9x16-h264"  # the default keeps its name
    assert parse_export("9:16,size=1080x1920").name == "9x16-h264"  # ...its size is the default
    assert parse_export("9:16,size=720p").name == "9x16-h264-720x1280"  # another size is named
    assert parse_export("9:16,captions=soft").name == "9x16-h264-soft-captions"
    assert parse_export("16:9,captions=none,denoise=hqdn3d").name == "16x9-h264-hqdn3d-no-captions"
