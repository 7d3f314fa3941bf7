"""Benchmark: the API's resident memory while a large file is uploaded
(POST /api/uploads streams it to disk). Prints RSS before, peak during, after."""

import os
import subprocess
import sys
import threading
import time

from harness import launch, make_clip, rss_kib

SIZE_MB = int(os.environ.get("SIZE_MB", "200"))


def main():
    svc = launch(overrides={"limits.min_free_disk_bytes": 0})
    try:
        # A real media file of the wanted size: a short clip in Matroska with a
        # large attachment (ffprobe accepts it, so the upload succeeds with 201).
        blob = os.path.join(svc.tmp, "blob.bin")
        with open(blob, "wb") as f:
            for _ in range(SIZE_MB):
                f.write(os.urandom(1024 * 1024))
        clip = os.path.join(svc.tmp, "clip.mp4")
        make_clip(clip, "320x180", 2)
        src = os.path.join(svc.tmp, "big.mkv")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", clip, "-attach", blob,
                        "-metadata:s:t", "mimetype=application/octet-stream", "-c", "copy", src], check=True)
        os.remove(blob)
        print(f"[bench] uploading {os.path.getsize(src) / 1e6:.0f} MB ({src})", flush=True)
        before = rss_kib(svc.api)
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(svc.api))
                time.sleep(0.01)

        t = threading.Thread(target=sample)
        t.start()
        start = time.monotonic()
        r = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@" + src,
             "-H", "Content-Type: application/octet-stream", svc.url + "/api/uploads?filename=big.mkv"],
            capture_output=True, text=True, check=True,
        )
        elapsed = time.monotonic() - start
        done.set()
        t.join()
        after = rss_kib(svc.api)
        print(f"[bench] upload of {SIZE_MB} MB answered HTTP {r.stdout} in {elapsed:.2f} s")
        print(f"[bench] API RSS before: {before / 1024:.1f} MiB, peak during: {peak[0] / 1024:.1f} MiB, after: {after / 1024:.1f} MiB")
        print(f"[bench] growth during the upload: {(peak[0] - before) / 1024:.1f} MiB for {SIZE_MB} MB streamed")
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
