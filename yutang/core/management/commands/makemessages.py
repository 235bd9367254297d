"""`makemessages` that also extracts the service errors' templates.

Services raise `YutangError(N_("English template {param}"), params=...)` (yutang.core.errors):
`N_` is `gettext_noop` under a short name, which xgettext knows only when told. Without this,
`make messages` would mark every error translation obsolete. The console's choice labels use
`_lazy` (gettext_lazy under another short name), for the same reason."""

from __future__ import annotations

from django.core.management.commands.makemessages import Command as DjangoMakeMessages


class Command(DjangoMakeMessages):
    xgettext_options = [*DjangoMakeMessages.xgettext_options, "--keyword=N_", "--keyword=_lazy"]
