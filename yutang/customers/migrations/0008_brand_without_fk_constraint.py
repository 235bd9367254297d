"""No database foreign-key constraint on the brand of this table's rows: PostgreSQL checked it
per inserted row at commit (a `SELECT … FOR KEY SHARE` through SPI), once per new customer's
identity or aggregate row in event ingestion. The brand is always the writer's own; Django's
`on_delete=CASCADE` still deletes a brand's rows. The index and the customer's constraint stay."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0002_lease'),
        ('customers', '0007_consent_read_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='identity',
            name='brand',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='core.brand'),
        ),
    ]
