from django.apps import AppConfig


class SegmentsConfig(AppConfig):
    name = "yutang.segments"
    label = "segments"
    verbose_name = "Segments"

    def ready(self) -> None:
        from yutang.core.worker import register_loop
        from yutang.events.consumers import register_consumer
        from yutang.segments import autotags, scoring, services

        register_loop("segments.refresh", services.refresh_due_segments)
        register_loop("segments.auto_tags", autotags.apply_due_rules)
        register_loop("segments.nightly", scoring.run_nightly)
        register_consumer(
            "segments.auto_tags",
            autotags.handle_event,
            types=autotags.event_types,
            batch_handler=autotags.handle_events,
        )
