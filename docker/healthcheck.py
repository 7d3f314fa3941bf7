#!/usr/bin/env python3
"""Container health check of mediapro-api: GET /healthz on the port the API binds.

Used by the image's HEALTHCHECK (the runtime image has python3 for yt-dlp, so no
curl is needed). Exit 0 when the API answers 200, 1 otherwise. The port comes from
MEDIAPRO__SERVER__BIND (default 0.0.0.0:5000); a wildcard or empty host is checked
on 127.0.0.1. Worker containers have no HTTP port: compose disables the check there.
"""

import os
import sys
import urllib.request

bind = os.environ.get("MEDIAPRO__SERVER__BIND", "0.0.0.0:5000")
host, _, port = bind.rpartition(":")
host = host.strip("[]")
if host in ("", "0.0.0.0", "::"):
    host = "127.0.0.1"
if ":" in host:
    host = f"[{host}]"
url = f"http://{host}:{port or '5000'}/healthz"
# Never through an HTTP proxy set in the environment (e.g. an egress proxy for yt-dlp).
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(url, timeout=3) as resp:
        ok = resp.status == 200
except Exception as e:  # noqa: BLE001 - any failure means unhealthy
    print(f"{url}: {e}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if ok else 1)
