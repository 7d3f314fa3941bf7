"""Benchmark: resident memory of an idle API and an idle worker (children
excluded), a few seconds after start-up. Target: under 30 MB each."""

import sys
import time

from harness import launch, rss_kib


def main():
    # The default API thread count (one per core), not the tests' 2.
    svc = launch(workers=[{"queues": "download,process"}], overrides={"server.http_workers": None})
    try:
        time.sleep(5)
        api = rss_kib(svc.api)
        worker = rss_kib(svc.workers[0])
        print(f"[bench] idle RSS: API {api / 1024:.1f} MiB, worker {worker / 1024:.1f} MiB (target < 30 MB each)")
    finally:
        svc.stop()


if __name__ == "__main__":
    sys.exit(main())
