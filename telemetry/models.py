from __future__ import annotations

from django.db import models
from django.db.models import Q
from rest_framework_api_key.models import AbstractAPIKey


class AgentKey(AbstractAPIKey):
    """An agent's credential: only a hash is stored; revoked keys stop working at once.

    A key reports for the hosts bound to it (AgentHost); a host belongs to one key at a time, so
    no other key can write snapshots for it (or block its next ones with forged timestamps).
    """

    class Scope(models.TextChoices):
        HOSTS = "hosts", "its hosts only"
        ENROLL = "enroll", "its hosts, and new hosts it reports first"
        RELAY = "relay", "any host (relay)"

    # ENROLL is the default for keys made in code without hosts, so that a key keeps working for
    # the hosts it first reports for and never for a host another key owns. `create_agent` and the
    # admin always say which hosts (HOSTS) or that the key is a relay.
    scope = models.CharField(
        max_length=8, choices=Scope.choices, default=Scope.ENROLL,
        help_text="Which hosts the key may report for. A relay may report for any host.",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "agent key"
        verbose_name_plural = "agent keys"

    @property
    def principal(self) -> str:
        """How the key appears in the audit log: relays are named as such."""
        return f"{'relay' if self.scope == self.Scope.RELAY else 'agent'}:{self.name}"


class AgentHost(models.Model):
    """A host bound to the one agent key that may report for it."""

    hostname = models.CharField(max_length=255, unique=True)
    key = models.ForeignKey(AgentKey, on_delete=models.CASCADE, related_name="hosts")
    bound_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["hostname"]
        verbose_name = "host binding"

    def __str__(self) -> str:
        return self.hostname


class Endpoint(models.Model):
    hostname = models.CharField(max_length=255, unique=True)
    os = models.CharField(max_length=32, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    last_agent = models.ForeignKey(AgentKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The newest snapshot listed process names only (a Voltaxe Sentinel): judged by name rarity alone.
    names_only = models.BooleanField(default=False)
    # When the host came back as another machine (another OS, or after a silence mostly other
    # programs): training forgets what it ran before, so its old life vouches for nothing.
    reborn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname


class Snapshot(models.Model):
    """A process snapshot, or the carrier of one process-start event (``source``).

    Each event gets a carrier of its own, timed at the process's start: what ingestion, scoring,
    re-scoring, late history, recounts and retention do with a snapshot's records they then do
    with an event's, unchanged; and the event's identity (host, start time, pid and exe, held
    in ``event_key``) is a unique constraint, so the same event twice, even from concurrent
    requests, is stored once. Readers that mean snapshots (the page's recent snapshots, a
    host's last snapshot, the snapshots a day the features divide by) filter ``source``.
    """

    class Source(models.TextChoices):
        SNAPSHOT = "snapshot", "snapshot"
        EVENT = "event", "process-start event"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="snapshots")
    timestamp = models.DateTimeField(help_text="When the agent took the snapshot.")
    received_at = models.DateTimeField(auto_now_add=True)
    process_count = models.PositiveIntegerField()
    anomaly_count = models.PositiveIntegerField(default=0)
    # The number of the model version that scored it (an integer: telemetry knows no model); empty while unscored.
    model_number = models.PositiveIntegerField(null=True, blank=True, help_text="Empty while unscored.")
    # Who delivered it and what it said: a repeat is recognised only from the same key with the same content.
    agent = models.ForeignKey(AgentKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    digest = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the validated content; empty before it was kept.")
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.SNAPSHOT, db_default=Source.SNAPSHOT)
    # An event's pid and exe, digested (telemetry.events.event_key); empty for a snapshot.
    event_key = models.CharField(max_length=32, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-timestamp"]
        constraints = [
            # Partial: the snapshots' own index, so "this host's last snapshot" reads no event.
            models.UniqueConstraint(fields=["endpoint", "timestamp"], condition=Q(source="snapshot"),
                                    name="snapshot_unique_per_endpoint_time"),
            models.UniqueConstraint(fields=["endpoint", "timestamp", "event_key"], condition=Q(source="event"),
                                    name="event_unique_per_endpoint_start"),
        ]
        indexes = [
            models.Index(fields=["timestamp"], name="snapshot_timestamp"),
            models.Index(fields=["timestamp"], condition=Q(model_number__isnull=True), name="snapshot_unscored"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint_id}@{self.timestamp:%Y-%m-%d %H:%M:%S}"


class ProcessRecord(models.Model):
    """One process in one snapshot, with the model's verdict once scored."""

    class Status(models.TextChoices):
        NONE = "", "not flagged"
        OPEN = "open", "open"
        APPROVED = "approved", "approved as normal"
        CLEARED = "cleared", "cleared by a newer model"

    snapshot = models.ForeignKey(Snapshot, on_delete=models.CASCADE, related_name="processes")
    # Copied from the snapshot so that window queries and training read one table.
    # No index of its own: process_endpoint_time covers it.
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="+", db_index=False)
    observed_at = models.DateTimeField()
    hour = models.PositiveSmallIntegerField(help_text="UTC hour of the snapshot.")
    index = models.PositiveIntegerField(help_text="Position in the submitted list.")
    name = models.CharField(max_length=255, help_text="As the agent sent it.")
    name_norm = models.CharField("normalized name", max_length=255)
    pid = models.BigIntegerField(null=True, blank=True)
    ppid = models.BigIntegerField(null=True, blank=True)
    parent_name = models.CharField(max_length=255, blank=True, help_text="Normalized name of the parent in the same snapshot.")
    exe = models.CharField(max_length=2048, blank=True)
    exe_norm = models.CharField(max_length=2048, blank=True)
    username = models.CharField(max_length=255, blank=True)
    cmdline = models.TextField(blank=True)
    # From the command line at ingestion (telemetry.normalize.command_parts): what an interpreter
    # runs, and the normalized argument tokens the model learns as usual per program. Empty in
    # rows stored before they existed: such rows say nothing about command lines. A database
    # default too, so writers that do not know them (older code mid-upgrade, SQL) keep working.
    script = models.CharField(max_length=512, blank=True, default="", db_default="")
    args_norm = models.TextField("normalized arguments", blank=True, default="", db_default="")
    cpu_percent = models.FloatField(null=True, blank=True)
    memory_rss = models.BigIntegerField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True)
    flagged = models.BooleanField(null=True, blank=True, help_text="Empty while unscored.")
    reasons = models.JSONField(default=list, blank=True)
    model_number = models.PositiveIntegerField(null=True, blank=True, help_text="The number of the model version that scored it.")
    status = models.CharField(max_length=16, choices=Status.choices, default="", blank=True)
    # Consecutive snapshots of this host, this one included, in which this program's CPU was far
    # above its norm (axon/detector/norms.py): the next snapshot carries on from it. 0 when unscored.
    cpu_streak = models.PositiveSmallIntegerField(default=0, db_default=0)
    # The executable's SHA-256 where the source gives one (process-start events), lower-case hex.
    sha256 = models.CharField(max_length=64, blank=True, default="", db_default="")

    class Meta:
        ordering = ["snapshot_id", "index"]
        indexes = [
            models.Index(fields=["observed_at"], name="process_observed_at"),
            models.Index(fields=["endpoint", "observed_at"], name="process_endpoint_time"),
            models.Index(fields=["-observed_at"], condition=Q(flagged=True), name="process_flagged"),
            # The open-anomaly count on every page poll: an index-only count instead of a table scan.
            models.Index(fields=["observed_at"], condition=Q(flagged=True, status="open"), name="process_open_flag"),
        ]

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


class ProcessRollup(models.Model):
    """A day of one host's process records with one (program, path, parent, user, arguments), summed.

    What training reads (telemetry/rollups.py): its cost follows distinct combinations, not
    records. ``n00``..``n23`` and ``cpu00``..``cpu23`` (added below) are the count and CPU sum at
    each UTC hour of the day.
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(help_text="UTC day.")
    combo = models.UUIDField(help_text="Digest of the five strings below (telemetry.rollups.combo_id).")
    name_norm = models.CharField("normalized name", max_length=255)
    exe_norm = models.CharField(max_length=2048, blank=True)
    parent_name = models.CharField(max_length=255, blank=True)
    username = models.CharField(max_length=255, blank=True)
    args_norm = models.TextField("normalized arguments", blank=True)
    n = models.BigIntegerField("records", default=0)
    cpu_sum = models.FloatField(default=0.0)
    cpu_sq = models.FloatField(default=0.0)
    mem_sum = models.FloatField("memory sum (MiB)", default=0.0)
    mem_sq = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "day", "combo"], name="rollup_key")]
        indexes = [models.Index(fields=["day"], name="rollup_day")]

    def __str__(self) -> str:
        return f"{self.name_norm} on {self.endpoint_id} {self.day}"


class HostDay(models.Model):
    """How many snapshots a host sent in a UTC day, and the last one's time: the rollups' denominator."""

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="+", db_index=False)
    day = models.DateField(help_text="UTC day.")
    snapshots = models.IntegerField(default=0)
    last_at = models.DateTimeField("last snapshot")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "day"], name="host_day_key")]
        indexes = [models.Index(fields=["day"], name="host_day_day")]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {self.day}: {self.snapshots}"


for _hour in range(24):
    # A database default: a row is written by SQL that sets only the hours it has (telemetry/rollups.py).
    ProcessRollup.add_to_class(f"n{_hour:02d}", models.IntegerField(default=0, db_default=0))
    ProcessRollup.add_to_class(f"cpu{_hour:02d}", models.FloatField(default=0.0, db_default=0.0))
del _hour
