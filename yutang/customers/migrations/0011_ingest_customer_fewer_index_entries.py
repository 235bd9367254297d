"""Ingestion: less work per new customer. Index entries 12 → 7: the brand loses its own index (the
composite indexes lead with it); the owners and the merge pointer are indexed only where set
(partial indexes, which serve every lookup by a value and the deletions that set them to
NULL); the lifecycle stage keeps one plain index, without Django's `varchar_pattern_ops`
(`LIKE`) twin, which no query uses. The brand's foreign key loses its database constraint
(a `SELECT … FOR KEY SHARE` per new customer at commit), as the log's and the identities'
did in 0008 and events.0006/0007; Django's CASCADE is kept."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0002_lease'),
        ('customers', '0010_seg_customer_live'),
    ]

    operations = [
        migrations.AlterField(
            model_name='customer',
            name='brand',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='customers', to='core.brand'),
        ),
        migrations.AlterField(
            model_name='customer',
            name='lifecycle_stage',
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AlterField(
            model_name='customer',
            name='merged_into',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='absorbed', to='customers.customer'),
        ),
        migrations.AlterField(
            model_name='customer',
            name='owner_staff',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='customers', to='core.staff'),
        ),
        migrations.AlterField(
            model_name='customer',
            name='owner_store',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='customers', to='core.store'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(condition=models.Q(('owner_store__isnull', False)), fields=['owner_store'], name='customer_owner_store'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(condition=models.Q(('owner_staff__isnull', False)), fields=['owner_staff'], name='customer_owner_staff'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(condition=models.Q(('merged_into__isnull', False)), fields=['merged_into'], name='customer_merged_into'),
        ),
        migrations.AddIndex(
            model_name='customer',
            index=models.Index(fields=['lifecycle_stage'], name='customer_lifecycle_stage'),
        ),
    ]
