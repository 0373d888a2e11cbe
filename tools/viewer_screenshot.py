"""Screenshot the nerfstudio viewer of a trained run in headless Chromium, once it shows a rendered scene.

Starts ``spikenerf-viewer --load-config CONFIG`` (``ns-viewer`` on 127.0.0.1) on a free port, opens its page in
headless Chromium driven over the DevTools protocol, and takes a screenshot every few seconds until the
scene area shows a render (:func:`looks_rendered`: the viewer starts at the first training camera, so the
scene's background colour and the object fill the view) or ``--wait`` runs out; saves the last PNG and
exits 0 only if it shows a render (1 otherwise, 2 without Chromium).

    .venv/bin/python tools/viewer_screenshot.py --load-config outputs/.../config.yml --output viewer.png

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``websockets`` package (a viser
dependency).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from websockets.sync.client import connect  # a viser dependency

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
ENV_METHODS = ("spikingnerf=spikenerf.nerf.method_configs:spikingnerf,"
               "spikingnerf-ann=spikenerf.nerf.method_configs:spikingnerf_ann")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader")


def find_browser(name: str | None) -> str | None:
    for cand in ([name] if name else BROWSERS):
        path = shutil.which(cand)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` (a process this script started), killing it after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_browser(proc: subprocess.Popen) -> None:
    """Stop Chromium and its helpers (zygote, GPU, crashpad: one process group, started in its own session by
    :func:`capture`), so none of them still writes to the profile when it is removed."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the main process
    except ProcessLookupError:
        pass
    proc.wait()


def remove_profile(profile: Path, tries: int = 10) -> None:
    """Delete Chromium's profile folder. A helper that exits late can still add a file while the tree is being
    removed (seen once: ``OSError: Directory not empty``), so retry for a few seconds; a folder that still
    cannot be removed is reported, not raised: the screenshot is already written."""
    for _ in range(tries):
        shutil.rmtree(profile, ignore_errors=True)
        if not profile.exists():
            return
        time.sleep(0.5)
    print(f"note: could not remove Chromium's profile {profile}; delete it by hand", file=sys.stderr)


def wait_http(url: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def looks_rendered(png: bytes, panel_fraction: float = 0.3) -> bool:
    """True when the scene area (left of the control panel) holds a render: either a large near-white region
    (an object scene's white background, drawn by the server) with a coloured object, or a view the scene fills
    (a forward-facing capture has no background): most pixels brighter than the viewer's dark empty canvas, in
    many distinct colours. An empty viewer (the dark canvas, a grid, camera frustums) is neither."""
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)
    h, w, _ = img.shape
    area = img[h // 10: h - h // 10, w // 20: int(w * (1.0 - panel_fraction))]
    white = (area.min(-1) > 225).mean()
    colourful = ((area.max(-1) - area.min(-1)) > 40).mean()
    if white > 0.2 and colourful > 0.01:
        return True
    lit = (area.max(-1) > 60).mean()
    distinct = len(np.unique(area.reshape(-1, 3) // 8, axis=0))  # colours at 5 bits per channel
    return bool(lit > 0.5 and colourful > 0.05 and distinct > 500)


class DevTools:
    """The smallest DevTools-protocol client: one page, request / response by id."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, timeout: float = 60.0, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.time())))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
        raise TimeoutError(method)


def capture(browser: str, url: str, out: Path, width: int, height: int, wait_s: float,
            settle_s: float = 8.0) -> bool:
    """Open ``url``; screenshot every 2 s until :func:`looks_rendered` (then once more ``settle_s`` later) or
    ``wait_s``; write the last to ``out``."""
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="spikenerf-chromium-"))
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
           f"--window-size={width},{height}", "about:blank"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        pages = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    pages = [p for p in json.load(r) if p.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        if not pages:
            raise RuntimeError("Chromium's DevTools endpoint did not come up")
        with connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30) as ws:
            tools = DevTools(ws)
            tools.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=False)
            tools.call("Page.navigate", url=url)
            t0 = time.time()
            png = b""
            while time.time() - t0 < wait_s:
                time.sleep(2.0)
                png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
                if looks_rendered(png):
                    print(f"rendered scene after {time.time() - t0:.1f} s")
                    time.sleep(settle_s)  # the full-resolution pass follows the first, coarse one
                    png = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
                    break
            out.write_bytes(png)
            return looks_rendered(png)
    finally:
        stop_browser(proc)
        remove_profile(profile)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load-config", type=Path, required=True, help="config.yml of a trained run")
    ap.add_argument("--output", type=Path, default=Path("viewer.png"))
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--wait", type=float, default=120.0, help="seconds to wait for a rendered scene")
    ap.add_argument("--browser", default=None, help="browser executable (default: first of %s)" % ", ".join(BROWSERS))
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    args = ap.parse_args()

    browser = find_browser(args.browser)
    if browser is None:
        print("viewer_screenshot: no Chromium found (looked for %s). Install it with "
              "`apt-get install -y chromium`; no screenshot was taken." % ", ".join(BROWSERS), file=sys.stderr)
        return 2
    if not args.load_config.is_file():
        print(f"viewer_screenshot: {args.load_config} not found", file=sys.stderr)
        return 2

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ)
    env.setdefault("NERFSTUDIO_METHOD_CONFIGS", ENV_METHODS)
    viewer = [str(Path(sys.executable).with_name("spikenerf-viewer")), "--load-config", str(args.load_config),
              "--viewer.websocket-port", str(port)]
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(viewer, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_http(url, proc, args.startup_timeout):
            log.seek(0)
            print(f"viewer_screenshot: the viewer did not answer at {url}:\n{log.read()[-3000:]}", file=sys.stderr)
            return 1
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.unlink(missing_ok=True)
        ok = capture(browser, url, args.output.resolve(), args.width, args.height, args.wait)
        size = args.output.stat().st_size if args.output.is_file() else 0
        if not ok:
            print(f"viewer_screenshot: no rendered scene within {args.wait:.0f} s; saved the last screenshot "
                  f"{args.output} ({size} bytes)", file=sys.stderr)
            return 1
        print(f"saved {args.output} ({size} bytes) of {url}")
        return 0
    finally:
        stop(proc)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
