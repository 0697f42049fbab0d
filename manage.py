#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voltaxe.settings")
    if len(sys.argv) < 2 or sys.argv[1] == "help" or {"-h", "--help"} & set(sys.argv[2:]):
        # Asking what a command does needs no production secret: nothing here serves or signs anything.
        os.environ.setdefault("VOLTAXE_HELP_ONLY", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
