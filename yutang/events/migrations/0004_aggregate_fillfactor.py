"""Leave room in each page of the aggregates table for updated row versions (PostgreSQL).

Every ingested batch updates the aggregate row of each of its customers. With full pages
(fillfactor 100) each update writes the new row version to another page and adds an entry to
every index of the table; with room on the page, an update that changes no indexed column
(most of them: only order events move `last_order_at` and `paid_fen`) is a heap-only tuple
(HOT) update that touches no index. Applies to pages written from now on; SQLite has no
such setting."""

from django.db import migrations


def set_fillfactor(value: int):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            table = schema_editor.quote_name(
                apps.get_model("events", "CustomerAggregate")._meta.db_table
            )
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(value)})")

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0003_event_brand_type_time_cust"),
    ]

    operations = [migrations.RunPython(set_fillfactor(70), set_fillfactor(100))]
