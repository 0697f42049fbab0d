from django.core.management.base import BaseCommand, CommandError

from audit.actors import Actor
from telemetry.agent_keys import HostTaken, agent_key_create


class Command(BaseCommand):
    help = "Create an agent key bound to its hosts and print it once (only its hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for; also its host when no --host is given.")
        parser.add_argument("--host", action="append", default=[], metavar="HOSTNAME",
                            help="A host this key reports for (repeatable). Default: the host called NAME.")
        parser.add_argument("--any-host", action="store_true",
                            help="A relay key (a collector forwarding a fleet): reports for any host no other key is bound to.")
        parser.add_argument("--move", action="store_true",
                            help="Take hosts bound to another key (a re-imaged machine); each move is audited and "
                                 "the other key is not revoked.")

    def handle(self, *args, name: str, host: list[str], any_host: bool, move: bool, **options):
        try:
            agent, key = agent_key_create(name=name, hosts=host, any_host=any_host, move=move, actor=Actor(door="command"))
        except (HostTaken, ValueError) as exc:
            raise CommandError(str(exc)) from None
        hosts = ", ".join(agent.hosts.values_list("hostname", flat=True)) if not any_host else "any host (relay)"
        self.stderr.write(f"Agent key for {agent.name!r} (prefix {agent.prefix}), reports for: {hosts}. "
                          "It is shown only this once:")
        self.stdout.write(key)
