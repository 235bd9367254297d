from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "yutang.events"
    label = "events"
    verbose_name = "Event log"

    def ready(self) -> None:
        from yutang.events import merging

        merging.register()
