import sys
import time

from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor, InvalidInput
from axon.models import TrainingRun
from axon.services.press import retrain_request
from axon.services.runs import retrain_run, runs_reap
from axon.services.selection import retrain_preview


class Command(BaseCommand):
    help = "Retrain the anomaly model: the same retrain as the panic button, queued for the worker."

    def add_arguments(self, parser):
        parser.add_argument("--wait", action="store_true", help="Follow the run and exit non-zero if it does not succeed.")
        parser.add_argument("--exclude", action="append", default=[], metavar="NAME",
                            help="A process name that must not be learned as normal (repeatable).")
        parser.add_argument("--reason", default="", help="Why (kept in the run and the audit log).")
        parser.add_argument("--list", action="store_true",
                            help="Print what a press could approve now (key, risk, program, host) and start nothing.")
        parser.add_argument("--host", default="", metavar="HOSTNAME",
                            help="With --list: only this host's items, one by one even if the host floods.")
        parser.add_argument("--approve", nargs="+", action="extend", default=None, metavar="KEY",
                            help="Approve exactly these keys from --list (default: the low-risk ones).")
        parser.add_argument("--confirm-high-risk", nargs="+", action="extend", default=[], metavar="KEY",
                            help="The second step for each high-risk key in --approve: learn it as normal anyway.")
        parser.add_argument("--sync", action="store_true", help="Run the training in this process instead of the worker.")
        parser.add_argument("--timeout", type=float, default=None, help="With --wait: give up after this many seconds.")

    def handle(self, *args, wait, exclude, reason, sync, timeout, list, approve, confirm_high_risk, host, **options):
        if list:
            return self._list(exclude, host)
        try:
            outcome = retrain_request(actor=Actor(door=TrainingRun.Trigger.COMMAND),
                                               body={"reason": reason, "exclude": exclude, "approve": approve,
                                                     "confirm_high_risk": confirm_high_risk},
                                               enqueue=not sync)
        except InvalidInput as exc:
            raise CommandError(exc.detail) from None
        run = outcome.run
        self.stdout.write(f"{'Started' if outcome.started else 'Joined the run already in progress:'} run {run.pk}.")
        if outcome.started:
            self.stdout.write(f"It approves {len(run.approved)} item(s): "
                              + (", ".join(f"{a['key']} ({a['name']} on {a['hostname']})" for a in run.approved) or "none"))
        if sync and outcome.started:
            run = retrain_run(run_id=run.pk)
        elif not wait:
            return
        deadline = time.monotonic() + timeout if timeout else None
        while run.status in TrainingRun.IN_FLIGHT:
            if deadline and time.monotonic() > deadline:
                raise CommandError(f"Run {run.pk} is still {run.status} after {timeout:g} s; it goes on in the worker.")
            self._bar(run)
            time.sleep(0.5)
            runs_reap()
            run.refresh_from_db()
        self._bar(run)
        self.stdout.write("")
        self.stdout.write(run.message)
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {run.get_status_display()}.")

    def _list(self, exclude, host=""):
        preview = retrain_preview(exclude=exclude, hostname=host)
        for flood in preview["floods"]:
            self.stdout.write(f"! {flood.summary}; its items are not listed: --list --host {flood.hostname}")
        self.stdout.write(f"{preview['total']} item(s) a press could approve now "
                          f"(active model: {preview['active_model'] or 'none'}); * = approved by default:")
        for item in preview["will_learn"]:
            mark = "*" if item["default"] else " "
            self.stdout.write(f"{mark} {item['key']}  {item['risk']:<4}  {item['name']}  {item['exe'] or '-'}  "
                              f"parent {item['parent'] or '-'}  on {', '.join(item['hostnames'])}  "
                              f"({item['observations']} seen)")
            for why in item["risk_reasons"]:
                self.stdout.write(f"      risk: {why}")
            for why in item["held_reasons"]:
                self.stdout.write(f"      not ticked: {why}")

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
