"""Schemathesis hooks for tests/contract/schemathesis_test.sh (loaded through
SCHEMATHESIS_HOOKS=st_hooks with this directory on PYTHONPATH).

No generated request may cause traffic off loopback. `url` in the analyze and
download bodies (and any other `url` / `*_url` field: a future `callback_url`) is
what the API resolves (DNS) and yt-dlp would fetch, so every such string is
replaced, right before the request is sent (`before_call` runs in every phase,
after generation and after any other hook), with an IP-literal loopback URL:

- most of the time the fixture clip served on 127.0.0.1 (MEDIAPRO_ST_FIXTURE_URL),
  so analyze and download really succeed (200/202 and their schemas get checked);
- otherwise http://127.0.0.2:9/…, which the instance refuses without connecting
  (security.allowed_networks = 127.0.0.1/32: 127.0.0.2 is private, 400
  private_address).

A site profile's `upstream_proxy` (a proxy the egress guard would connect through)
becomes http://127.0.0.2:9, which the policy refuses without connecting.

No host name survives, so no DNS query is made. `input_file` of a processing request
becomes, now and then, the clip uploaded before the run (MEDIAPRO_ST_INPUT_FILE), so
a processing task is accepted too.
"""

from __future__ import annotations

import os
import zlib

import schemathesis

FIXTURE_URL = os.environ["MEDIAPRO_ST_FIXTURE_URL"]  # http://127.0.0.1:<port>/clip.mp4
REFUSED_URL = "http://127.0.0.2:9/refused.mp4"
INPUT_FILE = os.environ.get("MEDIAPRO_ST_INPUT_FILE", "")
REFUSED_PROXY = "http://127.0.0.2:9"


def _bucket(value: str, n: int) -> int:
    """A stable choice per generated value (so a replayed failure replays the same)."""
    return zlib.crc32(value.encode("utf-8", "surrogatepass")) % n


def _is_url_key(key: object) -> bool:
    return isinstance(key, str) and (key == "url" or key.endswith("_url"))


def _rewrite(node):
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if _is_url_key(key) and isinstance(value, str):
                node[key] = REFUSED_URL if _bucket(value, 4) == 0 else FIXTURE_URL
            elif key == "upstream_proxy" and isinstance(value, str):
                node[key] = REFUSED_PROXY
            elif key == "input_file" and isinstance(value, str) and INPUT_FILE and _bucket(value, 3) == 0:
                node[key] = INPUT_FILE
            else:
                _rewrite(value)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item)


def _assert_loopback_only(node) -> None:
    """Belt and braces: refuse to send a URL string that is not one of ours."""
    if isinstance(node, dict):
        for key, value in node.items():
            if _is_url_key(key) and isinstance(value, str) and value not in (FIXTURE_URL, REFUSED_URL):
                raise AssertionError(f"st_hooks: {key}={value!r} would leave loopback")
            if key == "upstream_proxy" and isinstance(value, str) and value != REFUSED_PROXY:
                raise AssertionError(f"st_hooks: upstream_proxy={value!r} would leave loopback")
            _assert_loopback_only(value)
    elif isinstance(node, list):
        for item in node:
            _assert_loopback_only(item)


@schemathesis.hook
def before_call(context, case, **kwargs):
    body = getattr(case, "body", None)
    if isinstance(body, (dict, list)):
        _rewrite(body)
        _assert_loopback_only(body)
