import sys
import time

from django.core.management.base import BaseCommand, CommandError

from axon import services
from axon.models import TrainingRun


class Command(BaseCommand):
    help = "Retrain the anomaly model: the same retrain as the panic button, queued for the worker."

    def add_arguments(self, parser):
        parser.add_argument("--wait", action="store_true", help="Follow the run and exit non-zero if it does not succeed.")
        parser.add_argument("--exclude", action="append", default=[], metavar="NAME",
                            help="A process name that must not be learned as normal (repeatable).")
        parser.add_argument("--reason", default="", help="Why (kept in the run and the audit log).")
        parser.add_argument("--sync", action="store_true", help="Run the training in this process instead of the worker.")
        parser.add_argument("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")

    def handle(self, *args, wait, exclude, reason, sync, timeout, **options):
        outcome = services.retrain_request(user=None, trigger=TrainingRun.Trigger.COMMAND, reason=reason,
                                           exclude=exclude, enqueue=not sync)
        run = outcome.run
        self.stdout.write(f"{'Started' if outcome.started else 'Joined the run already in progress:'} run {run.pk}.")
        if sync and outcome.started:
            run = services.retrain_run(run_id=run.pk)
        elif not wait:
            return
        deadline = time.monotonic() + timeout if timeout else None
        while run.status in TrainingRun.IN_FLIGHT:
            if deadline and time.monotonic() > deadline:
                raise CommandError(f"Run {run.pk} is still {run.status} after {timeout:g} s; it goes on in the worker.")
            self._bar(run)
            time.sleep(0.5)
            services.runs_reap()
            run.refresh_from_db()
        self._bar(run)
        self.stdout.write("")
        self.stdout.write(run.message)
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.get_status_display()}.")

    _last = None

    def _bar(self, run):
        filled = run.progress // 5
        line = f"[{'#' * filled}{'.' * (20 - filled)}] {run.progress:3d}% {run.stage}"
        if sys.stdout.isatty():
            self.stdout.write("\r" + line.ljust(50), ending="")
        elif line != self._last:  # a log file gets one line per change
            self.stdout.write(line)
        self._last = line
        self.stdout.flush()
