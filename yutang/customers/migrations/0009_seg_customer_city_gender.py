"""Segments: a partial index on the live customers' (brand, city, gender, id), so a rule on the
city (and gender) — the portrait's most common filters — counts and lists its members from the
index alone instead of reading every customer of the brand. The ingest path writes a customer
row only when it creates one (not per event)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0008_brand_without_fk_constraint"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="customer",
            index=models.Index(
                condition=models.Q(("merged_into__isnull", True)),
                fields=["brand", "city", "gender", "id"],
                name="customer_seg_city_gender",
            ),
        ),
    ]
