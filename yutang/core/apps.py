from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "yutang.core"
    label = "core"
    verbose_name = "Yutang core"

    def ready(self) -> None:
        from yutang.core.db import forget_row_state

        # `flush` (and a migration) ends with post_migrate: ids restart, so state cached
        # about rows by id must go (see `core.db.forget_on_flush`).
        post_migrate.connect(forget_row_state, dispatch_uid="yutang.core.forget_row_state")
