"""Segments: a partial index on the live customers' (brand, id), so a rule whose members come
from another table (tags, the event log, aggregates, the property rollups) checks them against
the brand's live customers in this index alone (index-only probes or one ordered pass),
instead of reading customer rows or scanning the whole table. The ingest path writes a
customer row only when it creates one (not per event)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0009_seg_customer_city_gender"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="customer",
            index=models.Index(
                condition=models.Q(("merged_into__isnull", True)),
                fields=["brand", "id"],
                name="customer_seg_live",
            ),
        ),
    ]
