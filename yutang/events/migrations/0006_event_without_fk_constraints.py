"""The event log without database foreign-key constraints on brand and customer: PostgreSQL
checked both per inserted event at commit (`SELECT … FOR KEY SHARE` through SPI), about a tenth
of its CPU per ingested event. Django's `on_delete=CASCADE` still removes a deleted brand's or
customer's events; the indexes stay (see models.Event)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_lease"),
        ("customers", "0007_consent_read_index"),
        ("events", "0005_redundant_fk_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="brand",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="core.brand",
            ),
        ),
        migrations.AlterField(
            model_name="event",
            name="customer",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="customers.customer",
            ),
        ),
    ]
