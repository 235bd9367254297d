from django.apps import AppConfig


class JourneysConfig(AppConfig):
    name = "yutang.journeys"
    label = "journeys"
    verbose_name = "Journeys and staff tasks"

    def ready(self) -> None:
        from yutang.core.worker import register_loop
        from yutang.events.consumers import register_consumer
        from yutang.journeys import engine, repurchase, tasks

        repurchase.register()  # the `repurchase_due` rule kind

        register_consumer(
            "journeys.events",
            engine.handle_event,
            types=engine.event_types,
            batch_handler=engine.handle_events,
        )
        register_loop("journeys.steps", engine.run_due_once)
        register_loop("journeys.schedules", engine.run_schedules_once)
        register_loop("journeys.task_reminders", tasks.remind_overdue_once)
