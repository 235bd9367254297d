from django.apps import AppConfig


class CarriersConfig(AppConfig):
    name = "yutang.carriers"
    label = "carriers"
    verbose_name = "Carriers"

    def ready(self) -> None:
        from yutang.carriers.adapters import email, sandbox, sms, webhook, wecom
        from yutang.carriers.base import register_adapter

        register_adapter("sandbox", sandbox.SandboxCarrier)
        register_adapter("webhook", webhook.WebhookCarrier)
        register_adapter("sms", sms.SmsCarrier)
        register_adapter("email", email.EmailCarrier)
        register_adapter("wecom", wecom.WeComCarrier)

        from yutang.carriers import facts, handover, merging, moments, tagsync
        from yutang.carriers.inbound import register_inbound_sink
        from yutang.core.worker import register_loop

        register_inbound_sink(facts.handle)
        merging.register()
        register_loop("carriers.tag_sync", tagsync.run_loop)
        register_loop("carriers.handover", handover.run_handovers)
        register_loop("carriers.moments", moments.run_loop)
