"""6. Storage: ArtifactStore vs the raw minio SDK, same private `weed mini`, same process.

ArtifactStore writes a lineage sidecar next to every object (alongside it, concurrently) and
verifies the sha256 on every read, hashing each chunk as it lands (one GET, no stat); the raw
side is what a developer writes with the SDK's defaults: `put_object`/`get_object` for bytes,
`fput_object`/`fget_object` for files. Each side has its own fresh bucket; sides alternate per
repetition, at least 7 of them outside quick mode (the goal is on the median).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from bench.common import MB, Context, Section, alternate, fresh_bucket, scratch_dir, timed


def run(ctx: Context) -> Section:
    from minio import Minio

    from reelflow.store.artifacts import ArtifactStore

    n_images = 5 if ctx.quick else 20
    video_mb = 20 if ctx.quick else 200
    reps = ctx.reps if ctx.quick else max(ctx.reps, 7)
    section = Section(
        key="storage",
        title="6. Storage",
        method=(
            f"{n_images} x 1 MB images (random bytes) put and get, and one {video_mb} MB video "
            "file uploaded and downloaded, against a private `weed mini` on free ports. "
            "ArtifactStore (put_bytes/get_bytes with sidecar + sha256 verify, put_file/get_file) "
            "vs raw minio (put_object/get_object, fput_object/fget_object, SDK defaults). "
            f"Figures are seconds for the whole batch; {reps} repetitions, alternating."
        ),
    )
    stack = ctx.get_stack()
    settings = stack.settings
    ours = ArtifactStore(settings.with_bucket(fresh_bucket("st-ours")))
    ours.ensure_bucket()
    raw = Minio(settings.endpoint, access_key=settings.access_key,
                secret_key=settings.secret_key.get_secret_value(), secure=False)
    raw_bucket = fresh_bucket("st-raw")
    raw.make_bucket(raw_bucket)
    images = [os.urandom(MB) for _ in range(n_images)]
    with scratch_dir(ctx.work, "storage") as tmp:
        video = tmp / "video.mp4"
        with video.open("wb") as fh:
            for _ in range(video_mb):
                fh.write(os.urandom(MB))

        def key(kind: str, rep: int, i: int) -> str:
            return f"projects/bench/shots/s{i:03d}/{kind}/r{rep}.png"

        def ours_put(rep: int) -> float:
            return timed(lambda: [ours.put_bytes(key("images", rep, i), d, "image/png")
                                  for i, d in enumerate(images)])[0]

        def raw_put(rep: int) -> float:
            return timed(lambda: [raw.put_object(raw_bucket, key("images", rep, i),
                                                 io.BytesIO(d), len(d), content_type="image/png")
                                  for i, d in enumerate(images)])[0]

        def ours_get(rep: int) -> float:
            return timed(lambda: [ours.get_bytes(key("images", rep, i))
                                  for i in range(n_images)])[0]

        def raw_get(rep: int) -> float:
            def one(i: int) -> bytes:
                resp = raw.get_object(raw_bucket, key("images", rep, i))
                try:
                    return resp.read()
                finally:
                    resp.close()
                    resp.release_conn()
            return timed(lambda: [one(i) for i in range(n_images)])[0]

        def vkey(rep: int) -> str:
            return f"projects/bench/edits/r{rep}.mp4"

        def ours_vput(rep: int) -> float:
            return timed(lambda: ours.put_file(vkey(rep), video, "video/mp4"))[0]

        def raw_vput(rep: int) -> float:
            return timed(lambda: raw.fput_object(raw_bucket, vkey(rep), str(video),
                                                 content_type="video/mp4"))[0]

        def ours_vget(rep: int) -> float:
            return timed(lambda: ours.get_file(vkey(rep), tmp / "ours.mp4"))[0]

        def raw_vget(rep: int) -> float:
            return timed(lambda: raw.fget_object(raw_bucket, vkey(rep), str(tmp / "raw.mp4")))[0]

        results = {}
        for name, a, b in (("images put", ours_put, raw_put), ("images get", ours_get, raw_get),
                           ("video put", ours_vput, raw_vput), ("video get", ours_vget, raw_vget)):
            results[name] = alternate(reps, {"store": a, "raw": b})
        same = Path(tmp / "ours.mp4").stat().st_size == Path(tmp / "raw.mp4").stat().st_size
    for name, samples in results.items():
        what = f"{n_images} x 1 MB" if name.startswith("images") else f"{video_mb} MB file"
        section.add(f"{name} / store", f"ArtifactStore, {what}", samples["store"])
        section.add(f"{name} / raw", f"raw minio SDK, {what}", samples["raw"])
        section.ratio(f"{name}", f"{name} / store", f"{name} / raw", goal=1.10)
    for name in ("video put", "video get"):
        mbps = video_mb / section.figure(f"{name} / store").median
        section.notes.append(f"{name}: ArtifactStore {mbps:.0f} MB/s")
    section.notes.append(f"downloaded videos have the same size on both sides: {same}")
    block = os.urandom(16 * MB)
    seconds = min(timed(lambda: hashlib.sha256(block).digest())[0] for _ in range(3))
    section.notes.append(f"sha256 on this machine: {16 / seconds:.0f} MB/s (one core)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    section.notes.append(f"load average at the end: {load}")
    return section
