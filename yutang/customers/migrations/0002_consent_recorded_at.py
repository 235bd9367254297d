from django.db import migrations, models
from django.db.models import F


def copy_changed_at(apps, schema_editor):
    Consent = apps.get_model("customers", "Consent")
    Consent.objects.update(recorded_at=F("changed_at"))


class Migration(migrations.Migration):
    dependencies = [("customers", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="consent",
            name="recorded_at",
            field=models.DateTimeField(null=True, help_text="When Yutang learned it"),
        ),
        migrations.RunPython(copy_changed_at, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="consent",
            name="recorded_at",
            field=models.DateTimeField(help_text="When Yutang learned it"),
        ),
        migrations.AlterField(
            model_name="consent",
            name="changed_at",
            field=models.DateTimeField(help_text="When the person said it"),
        ),
    ]
