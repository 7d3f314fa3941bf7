"""Benchmark: resident memory of an idle API and an idle worker (children
excluded), a few seconds after start-up. Target: under 30 MB each."""

import sys
import time

from harness import Service


def main():
    svc = Service(worker_queues="download,process")
    try:
        time.sleep(5)
        api = svc.rss_kib(svc.procs[0])
        worker = svc.rss_kib(svc.procs[1])
        print(f"[bench] idle RSS: API {api / 1024:.1f} MiB, worker {worker / 1024:.1f} MiB (target < 30 MB each)")
    finally:
        svc.close()


if __name__ == "__main__":
    sys.exit(main())
