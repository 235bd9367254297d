from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "yutang.core"
    label = "core"
    verbose_name = "Yutang core"
