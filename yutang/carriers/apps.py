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
