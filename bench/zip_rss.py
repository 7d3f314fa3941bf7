"""Benchmark: the API's resident memory while it streams a collection's ZIP
(`GET /api/download-result/{parent}`, crates/api/src/routes/result.rs and
crates/mediapro-core/src/zip.rs), for two collection sizes in the same run, beside
bare tools reading the same files.

Made here: one clip (ffmpeg testsrc2 + sine) muxed into a Matroska file with a
random attachment of ENTRY_MB (ffprobe accepts it), served on 127.0.0.1 under
distinct URLs and listed by RSS feeds (yt-dlp's generic extractor expands them).
Each feed is downloaded through the real service (POST /api/download with
`playlist`, release API + worker from tests/launcher.py), then its ZIP is streamed:
  - `curl -o /dev/null` at full speed (small and large collection),
  - a slow reader (`curl --limit-rate`) on the small one (backpressure),
  - the large one twice more (the API's memory settles rather than growing per stream),
while the API's VmRSS is sampled every 10 ms: before, peak during, after. Beside it,
in the same run: `cat` of the children's files to /dev/null and `zip -0` (a stored
ZIP, as ours) of the same files to stdout, with their own peak RSS.

Usage: python3 bench/zip_rss.py   (after cargo build --release -p mediapro-api -p mediapro-worker)
  SMALL (10) and LARGE (48) entries of ENTRY_MB (24) each; SLOW_MBPS (25)."""

import http.server
import os
import subprocess
import sys
import threading
import time
import zipfile

from harness import QuietHandler, check, launch, make_clip, pid_rss_kib, request, rss_kib, wait_final

SMALL = int(os.environ.get("SMALL", "10"))
LARGE = int(os.environ.get("LARGE", "48"))
ENTRY_MB = int(os.environ.get("ENTRY_MB", "24"))
SLOW_MBPS = int(os.environ.get("SLOW_MBPS", "25"))


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # yt-dlp's generic extractor reads an entry's headers and hangs up: not an error


def serve(root):
    handler = lambda *a, **kw: QuietHandler(*a, directory=root, **kw)  # noqa: E731
    httpd = QuietServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def feed(root, base, name, count):
    items = "".join(
        f'<item><title>Entry {i}</title><enclosure url="{base}/m/{name}-{i:03}.mkv" type="video/x-matroska" '
        f'length="1"/></item>\n' for i in range(1, count + 1))
    with open(os.path.join(root, f"{name}.xml"), "w") as f:
        f.write(f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>{name}</title>'
                f"<link>{base}/</link>\n{items}</channel></rss>\n")
    for i in range(1, count + 1):
        os.symlink(os.path.join(root, "entry.mkv"), os.path.join(root, "m", f"{name}-{i:03}.mkv"))
    return f"{base}/{name}.xml"


def sampled(pid_of, fn):
    """(result, peak KiB of the process pid_of() while fn ran)."""
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], pid_rss_kib(pid_of()))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        result = fn()
    finally:
        done.set()
        t.join()
    return result, peak[0]


def timed_proc(argv, stdout=subprocess.DEVNULL):
    """(seconds, peak RSS KiB, stdout bytes or None) of a bare tool run."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    _, peak = sampled(lambda: proc.pid, proc.wait)
    took = time.monotonic() - start
    check(proc.returncode == 0, f"{argv[0]}: {proc.stderr.read().decode()}")
    return took, peak


def children(svc, parent):
    """Every child of a collection (GET /api/tasks?parent_task_id=, all pages)."""
    out, cursor = [], None
    while True:
        url = f"{svc.url}/api/tasks?parent_task_id={parent}&limit=100" + (f"&cursor={cursor}" if cursor else "")
        _, page = request("GET", url)
        out += page["tasks"]
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def main():
    svc = launch(workers=[{"queues": "download,playlist", "concurrency": 2}],
                 overrides={"limits.min_free_disk_bytes": 0})
    httpd = None
    try:
        root = os.path.join(svc.tmp, "served")
        os.makedirs(os.path.join(root, "m"))
        clip = os.path.join(svc.tmp, "clip.mp4")
        make_clip(clip, "320x180", 2)
        blob = os.path.join(svc.tmp, "blob.bin")
        with open(blob, "wb") as f:
            for _ in range(ENTRY_MB):
                f.write(os.urandom(1024 * 1024))
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", clip, "-attach", blob,
                        "-metadata:s:t", "mimetype=application/octet-stream", "-c", "copy",
                        os.path.join(root, "entry.mkv")], check=True)
        os.remove(blob)
        entry_bytes = os.path.getsize(os.path.join(root, "entry.mkv"))
        httpd, base = serve(root)

        print(f"[bench] load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results = []
        for name, count in (("small", SMALL), ("large", LARGE)):
            url = feed(root, base, name, count)
            start = time.monotonic()
            status, body = request("POST", svc.url + "/api/download", {"url": url, "playlist": {}})
            check(status == 202, f"download: {status} {body}")
            parent = wait_final(svc, body["task_id"], poll=0.2)
            check(parent["status"] == "completed" and parent["children"] == {"completed": count},
                  f"collection {name}: {parent}")
            print(f"[bench] {name}: {count} entries of {entry_bytes / 2**20:.1f} MiB downloaded through the "
                  f"service in {time.monotonic() - start:.1f} s", flush=True)
            files = [os.path.join(svc.storage_root, t["downloaded_files"][0])
                     for t in children(svc, parent["task_id"])]
            check(len(files) == count, f"{len(files)} children listed")
            results.append((name, count, parent["task_id"], files))

        print()
        print(f"| collection | ZIP bytes | reader | API RSS before | peak | after | growth | throughput |")
        print(f"|---|---|---|---|---|---|---|---|")
        # Small, large, the small one read slowly, then the large one twice more (does
        # the API's memory settle, or grow with every stream?).
        small, large = results
        runs = [(*small, None), (*large, None), (*small, SLOW_MBPS), (*large, None), (*large, None)]
        for name, count, task_id, files, rate in runs:
            argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"]
            if rate:
                argv += ["--limit-rate", f"{rate}M"]
            argv.append(f"{svc.url}/api/download-result/{task_id}")
            time.sleep(1.0)  # let the API settle after the downloads and the previous stream
            before = rss_kib(svc.api)
            start = time.monotonic()
            out, peak = sampled(lambda: svc.api.pid,
                                lambda: subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
            took = time.monotonic() - start
            after = rss_kib(svc.api)
            code, size = out.split()
            want = sum(os.path.getsize(f) for f in files)
            check(code == "200" and int(size) > want, f"ZIP answer {out} for {want} bytes of files")
            reader = f"curl --limit-rate {rate}M" if rate else "curl -o /dev/null"
            print(f"| {name}: {count} × {entry_bytes / 2**20:.0f} MiB | {int(size) / 2**20:.0f} MiB | {reader} | "
                  f"{before / 1024:.1f} MiB | {peak / 1024:.1f} MiB | {after / 1024:.1f} MiB | "
                  f"{(peak - before) / 1024:+.1f} MiB | {int(size) / 2**20 / took:.0f} MiB/s |", flush=True)

        # The ZIP is the files: the small one saved and read back by Python's zipfile.
        name, count, task_id, files = results[0]
        saved = os.path.join(svc.tmp, "small.zip")
        subprocess.run(["curl", "-s", "-f", "-o", saved, f"{svc.url}/api/download-result/{task_id}"], check=True)
        with zipfile.ZipFile(saved) as z:
            check(z.testzip() is None, "a member's CRC differs")
            members = z.infolist()
            check(len(members) == count and all(m.compress_type == zipfile.ZIP_STORED for m in members),
                  f"{len(members)} members")
            check(sorted(m.file_size for m in members) == sorted(os.path.getsize(f) for f in files), "sizes")
        os.remove(saved)
        print(f"\n[bench] {name} ZIP read back: zipfile.testzip() OK, {count} stored members of the files' sizes")

        # The bare tools on the same files (page cache as warm as for the ZIP).
        print()
        print("| bare tool, same files | bytes | peak RSS of the tool | throughput |")
        print("|---|---|---|---|")
        for name, count, _, files in results:
            size = sum(os.path.getsize(f) for f in files)
            took, peak = timed_proc(["cat", *files])
            print(f"| `cat` ({name}, {count} files) > /dev/null | {size / 2**20:.0f} MiB | {peak / 1024:.1f} MiB | "
                  f"{size / 2**20 / took:.0f} MiB/s |", flush=True)
            took, peak = timed_proc(["zip", "-q", "-0", "-j", "-", *files])
            print(f"| `zip -0 -` ({name}, stored) > /dev/null | {size / 2**20:.0f} MiB | {peak / 1024:.1f} MiB | "
                  f"{size / 2**20 / took:.0f} MiB/s |", flush=True)
    finally:
        if httpd:
            httpd.shutdown()
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
