"""The `yutang` command: Django's management commands plus Yutang's own.

`yutang check` is Yutang's status report (configuration, database, worker, Django's system
checks); Django's bare system check stays available as `yutang djangocheck`."""

from __future__ import annotations

import os
import sys

ALIASES = {"check": "yutang_check", "djangocheck": "check"}


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "yutang.settings")
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ALIASES:
        args[0] = ALIASES[args[0]]
    from django.core.management import execute_from_command_line

    execute_from_command_line(["yutang", *args])


if __name__ == "__main__":
    main()
