"""Servers on the loopback address, each in a process of its own: an S3 server (moto's
standalone server) and a web server of one folder that serves byte ranges. Not threads of the
test process: GDAL holds the GIL while it opens a remote file, and a server in the same
process could then never answer it.

``python -m tests.helpers.servers web FOLDER`` runs the web server and prints its port.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server; yields its endpoint URL."""
    port = _free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _serving(command, f"http://127.0.0.1:{port}") as endpoint:
        yield endpoint


@contextlib.contextmanager
def web_server(folder: Path) -> Iterator[str]:
    """A web server of ``folder``; yields its base URL."""
    port = _free_port()
    command = [sys.executable, "-m", "tests.helpers.servers", "web", str(folder), str(port)]
    with _serving(command, f"http://127.0.0.1:{port}") as base:
        yield base


@contextlib.contextmanager
def _serving(command: list[str], url: str) -> Iterator[str]:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(command)} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Files, with the byte ranges GDAL's /vsicurl/ reads them by (as every web server and
    object store serves them; Python's own handler does not)."""

    def log_message(self, *args) -> None:  # a test's output is not a web log
        pass

    def do_GET(self) -> None:
        ranged = self.headers.get("Range", "")
        path = Path(self.translate_path(self.path))
        if not ranged.startswith("bytes=") or not path.is_file():
            return super().do_GET()
        size = path.stat().st_size
        first, _, last = ranged.removeprefix("bytes=").partition("-")
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
        with open(path, "rb") as file:
            file.seek(start)
            data = file.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    _, kind, folder, port = sys.argv
    assert kind == "web"
    handler = functools.partial(RangeHandler, directory=folder)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), handler).serve_forever()
