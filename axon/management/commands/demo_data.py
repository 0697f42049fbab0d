from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from audit.actors import Actor
from axon.models import ModelVersion
from axon.services.press import retrain_request
from axon.services.runs import retrain_run
from axon.services.versions import snapshots_score_pending
from telemetry.agent import snapshot_collect
from telemetry.demo import demo_payloads
from telemetry.ingest import snapshot_ingest_batch
from telemetry.models import Snapshot


class Command(BaseCommand):
    help = ("Fill a few days of plausible fleet history, train a first model on it, "
            "then add the last hours, in which something new appears.")

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=3)
        parser.add_argument("--recent-hours", type=int, default=2)
        parser.add_argument("--if-empty", action="store_true", help="Do nothing when telemetry is already stored.")

    def handle(self, *args, days, recent_hours, if_empty, **options):
        if if_empty and Snapshot.objects.exists():
            self.stdout.write("Telemetry already stored; demo data not added.")
            return
        now = timezone.now().replace(minute=0, second=0, microsecond=0)
        split = now - timedelta(hours=recent_hours)
        # This machine joins the demo fleet with its real processes, so the first model knows them.
        local = snapshot_collect()
        history = self._ingest(demo_payloads(start=split - timedelta(days=days), end=split, novelties=False, local=local))
        if not ModelVersion.objects.filter(is_active=True).exists():
            outcome = retrain_request(actor=Actor(), body={"reason": "first model on demo data"},
                                               enqueue=False)
            if outcome.started:
                run = retrain_run(run_id=outcome.run.pk)
                self.stdout.write(run.message)
        snapshots_score_pending()
        recent = self._ingest(demo_payloads(start=split, end=now + timedelta(minutes=1), novelties=True))
        self.stdout.write(f"Demo data: {history} snapshots of history and {recent} recent ones.")

    def _ingest(self, payloads) -> int:
        batch, count = [], 0
        for payload in payloads:
            batch.append(payload)
            if len(batch) == 100:
                snapshot_ingest_batch(payloads=batch)
                count, batch = count + len(batch), []
        if batch:
            snapshot_ingest_batch(payloads=batch)
            count += len(batch)
        return count
