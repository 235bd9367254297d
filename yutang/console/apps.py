from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "yutang.console"
    label = "console"
    verbose_name = "Yutang console"
