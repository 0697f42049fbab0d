from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or reset the password of) a superuser in the Security Admin role."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--email", default="")
        parser.add_argument("--password", required=True)

    def handle(self, *args, username, email, password, **options):
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        user.is_staff = user.is_superuser = True
        if email:
            user.email = email
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get(name="Security Admin"))
        self.stdout.write(f"{'Created' if created else 'Updated'} security admin {username!r}.")
