from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "yutang.simulator"
    label = "simulator"
    verbose_name = "Simulator"
