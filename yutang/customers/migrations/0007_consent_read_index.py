"""The delivery gate reads every consent of a batch's customers: an index on (customer, purpose,
carrier, status) makes that read index-only. It replaces the foreign key's single-column index on
customer (the unique (customer, purpose, carrier) and this index lead with it), so a consent
write costs as many index entries as before."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0006_identity_redundant_fk_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="consent",
            name="customer",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="consents",
                to="customers.customer",
            ),
        ),
        migrations.AddIndex(
            model_name="consent",
            index=models.Index(
                fields=["customer", "purpose", "carrier", "status"], name="consent_customer_read"
            ),
        ),
    ]
