from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "yutang.events"
    label = "events"
    verbose_name = "Event log"

    def ready(self) -> None:
        from yutang.core.worker import register_loop
        from yutang.events import consumers, merging

        merging.register()
        register_loop("events.consumers", consumers.run_all)
