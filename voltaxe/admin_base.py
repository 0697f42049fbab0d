"""What the admin classes share."""
from datetime import UTC, datetime, timedelta

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db import DataError, router, transaction
from django.db.models.sql.where import WhereNode


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the product itself (telemetry, runs, versions, the audit trail) are looked at, not edited."""

    allow_delete = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.allow_delete and super().has_delete_permission(request, obj)


def _lookup_values(node: WhereNode):
    for child in node.children:
        if isinstance(child, WhereNode):
            yield from _lookup_values(child)
        else:
            rhs = getattr(child, "rhs", None)
            yield from rhs if isinstance(rhs, (list, tuple)) else [rhs]


class GuardedChangeList(ChangeList):
    """A filter the database cannot hold is a bad lookup (the admin's redirect to ?e=1), not a 500.

    Any changelist takes `<date field>__gte=...` from the query string, and a time such as
    9999-12-31T23:59:59-23:59 parses but has no UTC (year 10000): SQLite's adapter overflows,
    PostgreSQL refuses the offset -23:59 whatever the year. A date hierarchy's year 9999 has no next year to end at.
    """

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (ValueError, OverflowError) as exc:  # the date hierarchy's bounds
            raise IncorrectLookupParameters(exc) from exc

    def get_queryset(self, request, exclude_parameters=None):
        qs = super().get_queryset(request, exclude_parameters)
        # Refused here, the same on every database: PostgreSQL holds year 0 where SQLite cannot, SQLite an
        # offset of -23:59 where PostgreSQL cannot.
        for value in _lookup_values(qs.query.where):
            if isinstance(value, datetime) and value.tzinfo is not None:
                # PostgreSQL's limit; real zones span -12:00 to +14:00.
                if abs(value.utcoffset() or timedelta()) >= timedelta(hours=16):
                    raise IncorrectLookupParameters(f"{value.isoformat()} has a UTC offset of 16 hours or more.")
                try:
                    value.astimezone(UTC)
                except OverflowError as exc:
                    raise IncorrectLookupParameters(f"{value.isoformat()} is not a time between the years 1 and 9999 "
                                                    "in UTC.") from exc
        return qs

    def get_results(self, request):
        # What the database itself refuses (`__year=99999999999999999999`, whatever else a backend cannot hold)
        # surfaces in the first query, the count; a savepoint keeps the request's transaction usable after it.
        try:
            with transaction.atomic(using=router.db_for_read(self.model)):
                super().get_results(request)
        except (DataError, OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc


def changelists_guard(site: admin.AdminSite = admin.site) -> None:
    """Every registered admin, the libraries' (auth, simplejwt, django-q2) too, lists through GuardedChangeList."""
    for model_admin in site._registry.values():
        model_admin.get_changelist = lambda request, **kwargs: GuardedChangeList
