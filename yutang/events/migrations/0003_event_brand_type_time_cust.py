"""Replace the (brand, type, occurred_at) index by one that ends with customer_id.

Segment conditions on events ("clicked at least twice in 14 days", "no order.paid in 60
days") select customer ids by type and time: with customer_id in the index they are answered
from the index alone (an index-only scan on PostgreSQL, a covering index on SQLite) instead of
fetching millions of scattered table rows. Same key prefix, so every existing use stays.
Cost on ingestion: measured in bench/RESULTS.md (2026-11-25, segments at scale)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_consumeroffset_txid_event_txid_and_more"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="event", name="event_brand_type_time"),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["brand", "type", "occurred_at", "customer"],
                name="event_brand_type_time_cust",
            ),
        ),
    ]
