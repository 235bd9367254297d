"""A task used only by the worker tests, to prove the worker runs what is enqueued."""

from django_tasks import task

from yutang.core.models import Brand


@task()
def rename_brand(brand_id: int, name: str) -> str:
    Brand.objects.filter(pk=brand_id).update(name=name)
    return name
