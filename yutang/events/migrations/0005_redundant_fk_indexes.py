"""Drop the single-column indexes Django gives every foreign key where a composite index
already leads with the column: events' brand (unique brand + idempotency key), events'
customer (customer + occurred_at) and aggregates' brand (brand + last order, brand + paid).
Every lookup and cascade by these columns uses the composite index; each index dropped is
one index entry less per ingested event. The foreign keys themselves stay."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_lease"),
        ("customers", "0005_importjob_rows_total_alter_importjob_status"),
        ("events", "0004_aggregate_fillfactor"),
    ]

    operations = [
        migrations.AlterField(
            model_name="customeraggregate",
            name="brand",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="core.brand",
            ),
        ),
        migrations.AlterField(
            model_name="event",
            name="brand",
            field=models.ForeignKey(
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
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="events",
                to="customers.customer",
            ),
        ),
    ]
