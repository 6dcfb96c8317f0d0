"""Real clients the tests drive when they are installed: headless Chromium (through the
Chrome DevTools protocol) and the Khronos glTF validator (node). `.ci/run` installs both;
without them the tests that need them skip with a message saying what is missing."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser_path() -> str | None:
    """The first Chromium-family browser on PATH (or ``$FACEFIT_CHROMIUM``)."""
    if os.environ.get("FACEFIT_CHROMIUM"):
        return os.environ["FACEFIT_CHROMIUM"]
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def node_env() -> dict[str, str]:
    """Environment for node with ``NODE_PATH`` extended by npm's global module folder."""
    env = dict(os.environ)
    paths = [p for p in env.get("NODE_PATH", "").split(os.pathsep) if p]
    npm = shutil.which("npm")
    if npm:
        try:
            root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
            if root:
                paths.append(root)
        except (OSError, subprocess.SubprocessError):
            pass
    env["NODE_PATH"] = os.pathsep.join(paths)
    return env


def gltf_validator() -> str | None:
    """The resolved path of the ``gltf-validator`` node module, or None when node or the
    module is missing (found through ``NODE_PATH`` and npm's global folder)."""
    if shutil.which("node") is None:
        return None
    out = subprocess.run(["node", "-e", "console.log(require.resolve('gltf-validator'))"],
                         capture_output=True, text=True, env=node_env(), timeout=60)
    return out.stdout.strip() or None if out.returncode == 0 else None


def validate_glb(path: Path) -> tuple[int, str]:
    """(number of errors, report text) of the Khronos validator on a GLB file."""
    js = ("const v=require('gltf-validator');const fs=require('fs');"
          f"v.validateBytes(new Uint8Array(fs.readFileSync({json.dumps(str(path))})))"
          ".then(r=>{console.log(r.issues.numErrors);console.error(JSON.stringify(r.issues))})"
          ".catch(e=>{console.log(-1);console.error(String(e))})")
    out = subprocess.run(["node", "-e", js], capture_output=True, text=True, env=node_env(),
                         timeout=120)
    return int(out.stdout.strip() or -1), out.stderr


class Browser:
    """Headless Chromium driven over the DevTools protocol, with networking disabled
    (offline emulation, every host name unresolvable). Collects console errors and
    exceptions in `errors` and every network request in `requests`."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        import websocket

        exe = browser_path()
        if exe is None:
            raise RuntimeError("no Chromium browser found")
        self._profile = tempfile.TemporaryDirectory(prefix="facefit-chromium-",
                                                    ignore_cleanup_errors=True)
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--remote-debugging-port=0", f"--user-data-dir={self._profile.name}",
             f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND",
             "--no-first-run", "--no-default-browser-check", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self._id = 0
        self.errors: list[str] = []
        self.requests: list[str] = []
        for method in ("Runtime.enable", "Log.enable", "Page.enable", "Network.enable"):
            self.call(method)
        self.call("Network.emulateNetworkConditions", offline=True, latency=0,
                  downloadThroughput=-1, uploadThroughput=-1)

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            self.errors.append(str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description")))
                                        for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(params["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                self.requests.append(url)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events are recorded)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def evaluate(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                        awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def open(self, path: Path) -> None:
        self.call("Page.navigate", url=path.resolve().as_uri())

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {expression}")

    def screenshot(self, selector: str) -> np.ndarray:
        """(H, W, 3) uint8 screenshot of the element matching ``selector``."""
        from PIL import Image

        r = self.evaluate(f"(()=>{{const b=document.querySelector({json.dumps(selector)})"
                          ".getBoundingClientRect();return [b.x,b.y,b.width,b.height]})()")
        shot = self.call("Page.captureScreenshot", format="png",
                         clip={"x": r[0], "y": r[1], "width": r[2], "height": r[3],
                               "scale": 1})
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"))

    def drag(self, selector: str, dx: float, dy: float, steps: int = 8) -> None:
        """Press the left button at the element's centre, move by (dx, dy), release."""
        x, y = self.evaluate(f"(()=>{{const b=document.querySelector({json.dumps(selector)})"
                             ".getBoundingClientRect();return [b.x+b.width/2,b.y+b.height/2]})()")
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left",
                  buttons=1, clickCount=1)
        for k in range(1, steps + 1):
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x + dx * k / steps,
                      y=y + dy * k / steps, button="left", buttons=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x + dx, y=y + dy,
                  button="left", buttons=0, clickCount=1)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - best effort on teardown
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        # Chromium's helper processes may still write to the profile for a moment after the
        # browser exits ("Directory not empty" at teardown): retry, then leave what remains
        for _ in range(30):
            shutil.rmtree(self._profile.name, ignore_errors=True)
            if not Path(self._profile.name).exists():
                break
            time.sleep(0.1)
        self._profile.cleanup()
