import socket
import time

from django.core.management.base import BaseCommand, CommandError

from telemetry.agent import events_send, snapshot_collect, snapshot_send
from telemetry.events import MAX_EVENTS, events_ingest
from telemetry.ingest import snapshot_ingest
from telemetry.proc_connector import ConnectorUnavailable, ExecListener

FLUSH_SECONDS = 2.0  # a start waits at most this long to be sent, unless 1,000 are waiting


class Command(BaseCommand):
    help = "Send this machine's processes (psutil) to a Voltaxe server, or store them directly."

    def add_arguments(self, parser):
        parser.add_argument("--server", help="Server URL, e.g. http://127.0.0.1:8000 (default: store directly).")
        parser.add_argument("--key", help="Agent key (manage.py create_agent NAME); needed with --server.")
        parser.add_argument("--every", type=float, default=0, help="Seconds between snapshots; 0 sends one and stops.")
        parser.add_argument("--count", type=int, default=0, help="Stop after this many snapshots (0: no limit).")
        parser.add_argument("--hostname", help="Report under this host name instead of this machine's.")
        parser.add_argument("--events", action="store_true",
                            help="Also report every process start between snapshots (Linux: the kernel's process "
                                 "connector; before Linux 6.6 it needs root or CAP_NET_ADMIN).")

    def handle(self, *args, server, key, every, count, hostname, events, **options):
        if server and not key:
            raise CommandError("--server needs --key: create one with `manage.py create_agent NAME`.")
        if every < 0:
            raise CommandError("--every must be 0 or more seconds.")
        if events and not every:
            raise CommandError("--events needs --every: process starts are reported between snapshots.")
        self.server, self.key = server, key
        self.listener = None
        if events:
            listener = ExecListener(hostname=hostname or socket.gethostname())
            try:
                listener.start()
            except ConnectorUnavailable as exc:
                self.stderr.write(f"Process starts are not reported: {exc} Snapshots are sent all the same.")
            else:
                self.listener = listener
                self.stdout.write("Listening for process starts (the kernel's process connector).")
                self.lost = (0, 0)
        try:
            self.loop(every=every, count=count, hostname=hostname)
        finally:
            if self.listener is not None:
                self.listener.stop()
                self.events_flush(everything=True)

    def loop(self, *, every, count, hostname):
        sent = 0
        while True:
            payload = snapshot_collect(hostname=hostname)
            try:
                if self.server:
                    result = snapshot_send(payload, server=self.server, key=self.key)
                else:
                    result = snapshot_ingest(payload=payload).body
            except Exception as exc:  # an agent keeps going: the next snapshot may get through
                self.stderr.write(f"Snapshot not stored: {exc}")
                if not every:
                    raise CommandError(str(exc)) from exc
            else:
                self.stdout.write(
                    f"{payload['timestamp']} {result['hostname']}: {result['processes']} processes, "
                    f"{len(result['anomalies'])} anomalies (model {result['model_version'] or 'none'})"
                )
            sent += 1
            if not every or (count and sent >= count):
                return
            self.between(every)

    def between(self, seconds: float) -> None:
        """Wait for the next snapshot, sending process starts as they come."""
        if self.listener is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.listener.pending.wait(MAX_EVENTS, timeout=min(left, FLUSH_SECONDS))
            self.events_flush()

    def events_flush(self, *, everything: bool = False) -> None:
        listener = self.listener
        assert listener is not None
        while batch := listener.pending.take(MAX_EVENTS):
            try:
                if self.server:
                    results = events_send(batch, server=self.server, key=self.key)
                else:
                    results = events_ingest(payloads=batch)
            except Exception as exc:  # like a snapshot: said, and the next batch may get through
                self.stderr.write(f"{len(batch)} process starts not stored: {exc}")
            else:
                refused = [r["error"] for r in results if "error" in r]
                anomalies = sum(len(r.get("anomalies", ())) for r in results)
                # Ending before /proc is read is ordinary (most of a shell script's commands do).
                self.stdout.write(f"{len(batch) - len(refused)} process starts, {anomalies} anomalies "
                                  f"({listener.gone} ended too soon to be read so far)")
                for error in refused[:3]:
                    self.stderr.write(f"A process start was refused ({error['status']}): {error['detail']}")
            if not everything and len(batch) < MAX_EVENTS:
                break
        lost = (listener.pending.dropped, listener.overruns)
        if lost != self.lost:
            self.lost = lost
            self.stderr.write(
                f"Process starts lost so far: {lost[0]} dropped while {listener.pending.capacity} waited to be sent; "
                f"the kernel's buffer overflowed {lost[1]} times (the collector fell behind an exec storm).")
