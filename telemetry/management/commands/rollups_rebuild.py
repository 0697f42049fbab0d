from django.core.management.base import BaseCommand, CommandError

from telemetry.models import Endpoint
from telemetry.rollups import rollups_rebuild


class Command(BaseCommand):
    help = ("Make the daily process rollups that training reads again from the stored process records "
            "(the upgrade's migration does it once; again after records were deleted by hand).")

    def add_arguments(self, parser):
        parser.add_argument("--host", action="append", default=[], help="Only this host (repeatable).")

    def handle(self, *args, host, **options):
        endpoint_ids = None
        if host:
            known = dict(Endpoint.objects.filter(hostname__in=host).values_list("hostname", "pk"))
            if missing := sorted(set(host) - set(known)):
                raise CommandError(f"No such host: {', '.join(missing)}. Host names are as the agents report them.")
            endpoint_ids = list(known.values())
        rows = rollups_rebuild(endpoint_ids=endpoint_ids)
        self.stdout.write(f"{rows:,} rollup rows written.")
