"""Tests of the yt-dlp host against real yt-dlp and ffmpeg, loopback traffic only
(a local http.server on 127.0.0.1 serves a clip made with ffmpeg).

Run: python3 -m unittest discover -s crates/mediapro-core/ythost -v"""

import hashlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest

from testkit import (FixtureServer, HostProcess, Job, analyze_argv, child_env, download_argv, group_members,
                     host_info, make_clip, run_cli)



def without_volatile(info):
    """The info JSON without what differs between any two CLI runs too: the
    time of the run and the User-Agent yt-dlp picks at random per process."""
    info = dict(info)
    info.pop("epoch", None)
    for holder in [info, *info.get("formats", []), *info.get("requested_downloads", [])]:
        holder.get("http_headers", {}).pop("User-Agent", None)
    return info


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class HostTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.media = tempfile.mkdtemp(prefix="ythost-media-")
        make_clip(os.path.join(cls.media, "clip.mp4"), 4)
        cls.server = FixtureServer(cls.media)
        cls.url = f"{cls.server.url}/clip.mp4"
        # HOST_ONLY is in the host's environment and must not reach a child.
        cls.host = HostProcess(extra_env={"HOST_ONLY": "1"})

    @classmethod
    def tearDownClass(cls):
        cls.host.stop()
        cls.server.stop()
        shutil.rmtree(cls.media, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ythost-case-")
        self.home = os.path.join(self.tmp, "home")
        os.mkdir(self.home, 0o700)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertIsNone(self.host.proc.poll(), "the host is still running after each test")

    def job(self, argv, **kw):
        return Job(self.host.socket, argv, child_env(self.home), **kw)

    def test_ready_line_reports_the_yt_dlp_version(self):
        import yt_dlp.version
        self.assertEqual(self.host.ready["event"], "ready")
        self.assertEqual(self.host.ready["yt_dlp"], yt_dlp.version.__version__)
        self.assertEqual(host_info(self.host.socket)["pid"], self.host.proc.pid)

    def test_analyze_through_the_host_equals_the_cli(self):
        warm = self.job(analyze_argv(self.url)).finish()
        cli = run_cli(analyze_argv(self.url), child_env(self.home))
        self.assertEqual(warm.exit["code"], 0, warm.stderr)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        a, b = without_volatile(json.loads(warm.stdout)), without_volatile(json.loads(cli.stdout))
        self.assertEqual(a, b)
        self.assertEqual(warm.stderr, cli.stderr)
        self.assertEqual((a["extractor"], a["title"], a["ext"]), ("generic", "clip", "mp4"))

    def test_a_failing_analyze_fails_like_the_cli(self):
        url = f"{self.server.url}/missing.mp4"
        warm = self.job(analyze_argv(url)).finish()
        cli = run_cli(analyze_argv(url), child_env(self.home))
        self.assertEqual(warm.exit["code"], cli.returncode)
        self.assertNotEqual(cli.returncode, 0)
        self.assertEqual(warm.stderr, cli.stderr)
        self.assertIn("HTTP Error 404", warm.stderr)

    def test_download_through_the_host_produces_the_same_file(self):
        out_warm, out_cli = os.path.join(self.tmp, "warm"), os.path.join(self.tmp, "cli")
        os.makedirs(out_warm)
        os.makedirs(out_cli)
        warm = self.job(download_argv(self.url, out_warm), cwd=out_warm).finish()
        cli = run_cli(download_argv(self.url, out_cli), child_env(self.home), cwd=out_cli)
        self.assertEqual(warm.exit["code"], 0, warm.stderr)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        files = [line[len("MPFILE "):] for line in warm.stdout.splitlines() if line.startswith("MPFILE ")]
        cli_files = [line[len("MPFILE "):] for line in cli.stdout.splitlines() if line.startswith("MPFILE ")]
        self.assertEqual(files, [os.path.join(out_warm, "clip.mp4")])
        self.assertEqual(cli_files, [os.path.join(out_cli, "clip.mp4")])
        self.assertEqual(sha256(files[0]), sha256(os.path.join(self.media, "clip.mp4")))
        self.assertEqual(sha256(files[0]), sha256(cli_files[0]))
        # The same machine-readable progress lines, in the same order.
        def kinds(text):
            return [line.split()[:2] for line in text.splitlines() if line.startswith("MPPROG ")]
        self.assertTrue(kinds(warm.stdout))
        self.assertEqual(kinds(warm.stdout)[-1], ["MPPROG", "finished"])
        self.assertEqual(kinds(warm.stdout)[-1], kinds(cli.stdout)[-1])

    def test_the_child_gets_the_requested_environment_and_folder(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        env_file = os.path.join(self.tmp, "env.txt")
        # --exec is a test-only addition: it shows what a program yt-dlp starts
        # (ffmpeg, in real jobs) inherits.
        argv = download_argv(self.url, out, extra=["--exec", f"env > {env_file}; pwd >> {env_file}"])
        argv.remove("--no-exec")
        env = child_env(self.home, {"http_proxy": "http://127.0.0.1:9", "no_proxy": "127.0.0.1"})
        job = Job(self.host.socket, argv, env, cwd=out).finish()
        self.assertEqual(job.exit["code"], 0, job.stderr)
        with open(env_file) as f:
            lines = f.read().splitlines()
        seen = dict(line.split("=", 1) for line in lines[:-1] if "=" in line)
        self.assertEqual(seen["HOME"], self.home)
        self.assertEqual(seen["http_proxy"], "http://127.0.0.1:9")
        self.assertNotIn("HOST_ONLY", seen)
        self.assertEqual(lines[-1], out)

    def test_killing_the_group_stops_the_child_and_leaves_no_process(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        job = self.job(download_argv(f"{self.server.url}/stall/clip.mp4", out), cwd=out)
        self.assertEqual(os.getpgid(job.pid), job.pid, "the child leads its own group")
        time.sleep(1.0)  # well inside the download by now
        self.assertEqual(group_members(job.pid), [job.pid])
        started = time.monotonic()
        os.killpg(job.pid, signal.SIGKILL)
        job.finish(timeout=10)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual(job.exit, {"event": "exit", "pid": job.pid, "code": None, "signal": signal.SIGKILL})
        self.assertTrue(wait_until(lambda: not group_members(job.pid)), group_members(job.pid))
        self.assertFalse(os.path.exists(f"/proc/{job.pid}"), "the host reaped the child")

    def test_a_caller_that_goes_away_gets_its_child_killed(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        job = self.job(download_argv(f"{self.server.url}/stall/clip.mp4", out), cwd=out, rlimit_as=3 << 30)
        time.sleep(0.5)
        with open(f"/proc/{job.pid}/limits") as f:
            limit = next(line for line in f if line.startswith("Max address space")).split()[3:5]
        self.assertEqual(limit, [str(3 << 30)] * 2, "rlimit_as is the child's address-space limit")
        os.close(job.out_r)
        os.close(job.err_r)
        job.close()
        self.assertTrue(wait_until(lambda: not os.path.exists(f"/proc/{job.pid}")), "child killed and reaped")

    def test_the_host_survives_a_crashing_child(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        job = self.job(download_argv(f"{self.server.url}/stall/clip.mp4", out), cwd=out)
        time.sleep(0.5)
        os.kill(job.pid, signal.SIGSEGV)
        job.finish(timeout=10)
        self.assertEqual(job.exit["signal"], signal.SIGSEGV)
        # A child that cannot even start yt-dlp (no such folder) exits on its own.
        broken = self.job(analyze_argv(self.url), cwd="/nonexistent/folder").finish()
        self.assertEqual(broken.exit["code"], 126)
        self.assertIn("FileNotFoundError", broken.stderr)
        # A malformed request is refused; the host carries on.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.host.socket)
            s.sendall(b'{"op":"run","argv":["-J"],"env":{}}\n')  # no descriptors
            reply = json.loads(s.makefile("rb").readline())
        self.assertEqual(reply["event"], "error")
        self.assertIn("2 descriptors", reply["message"])
        after = self.job(analyze_argv(self.url)).finish()
        self.assertEqual(after.exit["code"], 0, after.stderr)
        self.assertEqual(json.loads(after.stdout)["title"], "clip")

    def test_twenty_analyzes_at_once_all_succeed(self):
        results, errors = [None] * 20, []

        def one(i):
            try:
                results[i] = self.job(analyze_argv(f"{self.url}?n={i}")).finish(timeout=120)
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(e)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        self.assertEqual(errors, [])
        for r in results:
            self.assertEqual(r.exit["code"], 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["title"], "clip")
        self.assertEqual(len({r.pid for r in results}), 20)
        print(f"\n  20 analyzes at once through the host: {elapsed:.2f} s", flush=True)


class LifecycleTest(unittest.TestCase):
    """Hosts of their own (no warm-up: the lifecycle does not need yt-dlp warm)."""

    def test_the_host_drains_and_exits_after_max_jobs(self):
        host = HostProcess("--no-warmup", "--max-jobs", "2")
        try:
            home = tempfile.mkdtemp()
            for _ in range(2):
                job = Job(host.socket, ["--version"], child_env(home)).finish()
                self.assertEqual(job.exit["code"], 0)
                self.assertRegex(job.stdout.strip(), r"^\d{4}\.\d{2}\.\d{2}")
            draining = json.loads(host.proc.stdout.readline())
            self.assertEqual(draining["event"], "draining")
            self.assertEqual(host.proc.wait(timeout=10), 0)
            self.assertFalse(os.path.exists(host.socket), "the socket is removed for the next host")
        finally:
            host.stop()

    def test_the_host_drains_above_its_memory_ceiling(self):
        host = HostProcess("--no-warmup", "--max-rss-mib", "1")  # any Python is above 1 MiB
        try:
            job = Job(host.socket, ["--version"], child_env(tempfile.mkdtemp())).finish()
            self.assertEqual(job.exit["code"], 0, "the job that started is finished and reported")
            draining = json.loads(host.proc.stdout.readline())
            self.assertEqual(draining["event"], "draining")
            self.assertIn("RSS", draining["reason"])
            self.assertEqual(host.proc.wait(timeout=10), 0)
        finally:
            host.stop()

    def test_eof_on_stdin_drains_the_host(self):
        host = HostProcess("--no-warmup", "--watch-stdin")
        try:
            host.proc.stdin.close()
            self.assertEqual(host.proc.wait(timeout=10), 0)
        finally:
            host.stop()

    def test_a_stale_socket_file_is_replaced(self):
        first = HostProcess("--no-warmup")
        path = first.socket
        first.proc.kill()  # dies without removing its socket
        first.proc.wait()
        self.assertTrue(os.path.exists(path))
        second = HostProcess("--no-warmup", socket_path=path)
        try:
            self.assertEqual(host_info(path)["pid"], second.proc.pid)
        finally:
            second.stop()
            first.stop()


if __name__ == "__main__":
    unittest.main()
