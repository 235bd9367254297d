from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "yutang.messaging"
    label = "messaging"
    verbose_name = "Messaging"

    def ready(self) -> None:
        from yutang.carriers.inbound import register_inbound_sink
        from yutang.core.worker import register_loop
        from yutang.messaging import confirmations, delivery, merging, services

        merging.register()
        register_inbound_sink(services.handle_inbound, batch=services.handle_inbound_batch)
        register_loop("messaging.deliver", delivery.run_loop)
        register_loop("messaging.confirmations", confirmations.run_loop)
