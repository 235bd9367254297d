"""Drop the single-column indexes Django gives the identity's foreign keys: brand leads the
unique (brand, kind, namespace, value_hash) and (brand, value_hash) indexes, customer leads
(customer, kind). Lookups and cascades by these columns use the composite indexes; each index
dropped is one index entry less per identity written. The foreign keys themselves stay."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_lease"),
        ("customers", "0005_importjob_rows_total_alter_importjob_status"),
    ]

    operations = [
        migrations.AlterField(
            model_name="identity",
            name="brand",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="core.brand",
            ),
        ),
        migrations.AlterField(
            model_name="identity",
            name="customer",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="identities",
                to="customers.customer",
            ),
        ),
    ]
