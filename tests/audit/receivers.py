"""Real receivers for the notification tests: an HTTP server, syslog sockets, and rsyslog itself."""
from __future__ import annotations

import json
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import REPO
from tests.harness import free_port


def readme_verify():
    """The verification recipe exactly as README.md prints it (its ```python block that defines verify)."""
    text = (REPO / "README.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify(" in block]
    scope: dict = {}
    exec(code, scope)  # noqa: S102 (our own README)
    return scope["verify"]


def verify(secret: str, headers, body: bytes) -> bool:
    """A receiver checking a delivery with the README's recipe."""
    return readme_verify()(secret, headers["Voltaxe-Signature"], body)


class WebhookReceiver:
    """A local HTTP server that records every request; `statuses` are answered in turn (the last one repeats)."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver says no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


class SilentServer:
    """Accepts connections and never answers: a receiver that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()


class SyslogReceiver:
    """UDP or TCP syslog: every datagram, or every octet-counted frame on a connection (RFC 6587)."""

    def __init__(self, proto: str):
        self.lines: list[str] = []
        outer = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                outer.lines.append(self.request[0].decode())

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self):
                data = self.rfile.read()
                while data:
                    length, _, rest = data.partition(b" ")
                    outer.lines.append(rest[:int(length)].decode())
                    data = rest[int(length):]

        server_class = socketserver.ThreadingUDPServer if proto == "udp" else socketserver.ThreadingTCPServer
        self.server = server_class(("127.0.0.1", 0), Udp if proto == "udp" else Tcp)
        self.target = f"{proto}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> SyslogReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int, seconds: float = 10) -> list[str]:
        deadline = time.monotonic() + seconds
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.lines


RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


class Rsyslog:
    """A real rsyslogd (Debian's package) listening on a TCP port and writing each message it receives to a file."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.out = folder / "received.log"
        self.target = f"tcp://127.0.0.1:{self.port}"
        (folder / "rsyslog.conf").write_text(f"""
global(workDirectory="{folder}")
module(load="imtcp")
input(type="imtcp" port="{self.port}" address="127.0.0.1")
template(name="wire" type="string" string="%syslogtag% %msgid% %msg%\\n")
action(type="omfile" file="{self.out}" template="wire")
""")
        self.process: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return Path(RSYSLOGD).exists()

    def __enter__(self) -> Rsyslog:
        self.process = subprocess.Popen([RSYSLOGD, "-n", "-f", str(self.folder / "rsyslog.conf"),
                                         "-i", str(self.folder / "rsyslog.pid")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("rsyslogd did not start listening")

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def wait(self, text: str, seconds: float = 15) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            written = self.out.read_text() if self.out.exists() else ""
            if text in written:
                return written
            time.sleep(0.05)
        return self.out.read_text() if self.out.exists() else ""
