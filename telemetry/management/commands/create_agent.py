from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_record
from telemetry.models import AgentKey


class Command(BaseCommand):
    help = "Create an agent key and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. the host or fleet name.")

    def handle(self, *args, name: str, **options):
        name = name.strip()
        if not name:
            raise CommandError("Give the agent a name, e.g. `manage.py create_agent laptop-12`.")
        agent, key = AgentKey.objects.create_key(name=name[:50])
        audit_record(action="agent.created", resource_type="agent_key", resource_id=agent.prefix,
                     details={"name": agent.name, "via": "command"})
        self.stderr.write(f"Agent key for {agent.name!r} (prefix {agent.prefix}). It is shown only this once:")
        self.stdout.write(key)
