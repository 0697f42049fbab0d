import time

from django.core.management.base import BaseCommand, CommandError

from telemetry.agent import snapshot_collect, snapshot_send


class Command(BaseCommand):
    help = "Send this machine's processes (psutil) to a Voltaxe server, or store them directly."

    def add_arguments(self, parser):
        parser.add_argument("--server", help="Server URL, e.g. http://127.0.0.1:8000 (default: store directly).")
        parser.add_argument("--key", help="Agent key (manage.py create_agent NAME); needed with --server.")
        parser.add_argument("--every", type=float, default=0, help="Seconds between snapshots; 0 sends one and stops.")
        parser.add_argument("--count", type=int, default=0, help="Stop after this many snapshots (0: no limit).")
        parser.add_argument("--hostname", help="Report under this host name instead of this machine's.")

    def handle(self, *args, server, key, every, count, hostname, **options):
        if server and not key:
            raise CommandError("--server needs --key: create one with `manage.py create_agent NAME`.")
        if every < 0:
            raise CommandError("--every must be 0 or more seconds.")
        sent = 0
        while True:
            payload = snapshot_collect(hostname=hostname)
            try:
                if server:
                    result = snapshot_send(payload, server=server, key=key)
                else:
                    from telemetry.services import snapshot_ingest

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
            time.sleep(every)
