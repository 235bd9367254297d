"""REST handlers for journeys and staff tasks (thin: validate, one service, render)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import File, Router, Status
from ninja.files import UploadedFile

from yutang.core.apiauth import actor
from yutang.core.errors import N_, ValidationFailed
from yutang.journeys import services, tasks
from yutang.journeys.schemas import (
    EnrolIn,
    EnrollmentPage,
    EnrolOut,
    JourneyIn,
    JourneyOut,
    JourneyPatch,
    PublishIn,
    StatusIn,
    TaskComplete,
    TaskIn,
    TaskOut,
    TaskPage,
    TaskPatch,
    TaskSend,
)

router = Router(tags=["journeys"])


@router.get("/journeys", response=list[JourneyOut])
def list_journeys(request: HttpRequest) -> object:
    return services.list_journeys(actor=actor(request))


@router.post("/journeys", response={201: JourneyOut})
def create_journey(request: HttpRequest, payload: JourneyIn) -> object:
    return Status(201, services.create_journey(actor=actor(request), **payload.model_dump()))


@router.post("/journeys/import", response={201: JourneyOut})
def import_journey(request: HttpRequest, payload: JourneyIn) -> object:
    """Import what GET /journeys/{id}/export gave out (name, description, definition)."""
    return Status(201, services.import_journey(actor=actor(request), data=payload.model_dump()))


@router.get("/journeys/{journey_id}", response=JourneyOut)
def get_journey(request: HttpRequest, journey_id: int) -> object:
    return services.get_journey(actor=actor(request), journey_id=journey_id)


@router.get("/journeys/{journey_id}/export")
def export_journey(request: HttpRequest, journey_id: int) -> object:
    return services.export_journey(actor=actor(request), journey_id=journey_id)


@router.patch("/journeys/{journey_id}", response=JourneyOut)
def update_journey(request: HttpRequest, journey_id: int, payload: JourneyPatch) -> object:
    return services.update_journey(
        actor=actor(request), journey_id=journey_id, **payload.model_dump(exclude_unset=True)
    )


@router.delete("/journeys/{journey_id}", response={204: None})
def delete_journey(request: HttpRequest, journey_id: int) -> object:
    services.delete_journey(actor=actor(request), journey_id=journey_id)
    return Status(204, None)


@router.post("/journeys/{journey_id}/publish", response=JourneyOut)
def publish(request: HttpRequest, journey_id: int, payload: PublishIn) -> object:
    viewer = actor(request)
    services.publish(actor=viewer, journey_id=journey_id, migration=payload.migration)
    return services.get_journey(actor=viewer, journey_id=journey_id)


@router.post("/journeys/{journey_id}/status", response=JourneyOut)
def set_status(request: HttpRequest, journey_id: int, payload: StatusIn) -> object:
    return services.set_status(actor=actor(request), journey_id=journey_id, status=payload.status)


@router.post("/journeys/{journey_id}/enrol", response=list[EnrolOut])
def enrol(request: HttpRequest, journey_id: int, payload: EnrolIn) -> object:
    return services.enrol_customers(
        actor=actor(request), journey_id=journey_id, customer_ids=payload.customer_ids
    )


@router.post("/journeys/{journey_id}/enrol-csv", response=list[EnrolOut])
def enrol_csv(request: HttpRequest, journey_id: int, file: UploadedFile = File(...)) -> object:  # noqa: B008
    try:
        text = file.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(N_("The file is not UTF-8 text."), field="file") from None
    return services.enrol_csv(actor=actor(request), journey_id=journey_id, text=text)


@router.get("/journeys/{journey_id}/enrollments", response=EnrollmentPage)
def enrollments(
    request: HttpRequest,
    journey_id: int,
    state: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> object:
    """Newest first; pass `next_cursor` back as `cursor` for the next page (limit ≤ 500)."""
    items, next_cursor = services.page_enrollments(
        actor=actor(request), journey_id=journey_id, state=state, cursor=cursor, limit=limit
    )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/journeys/{journey_id}/metrics")
def metrics(request: HttpRequest, journey_id: int) -> object:
    return services.journey_metrics(actor=actor(request), journey_id=journey_id)


@router.get("/tasks", response=TaskPage, tags=["tasks"])
def list_tasks(
    request: HttpRequest,
    box: str = "mine",
    status: str = "open",
    cursor: str | None = None,
    limit: int = 100,
) -> object:
    """Newest first; pass `next_cursor` back as `cursor` for the next page (limit ≤ 500)."""
    items, next_cursor = tasks.page_tasks(
        actor=actor(request), box=box, status=status, cursor=cursor, limit=limit
    )
    return {"items": items, "next_cursor": next_cursor}


@router.post("/tasks", response={201: TaskOut}, tags=["tasks"])
def create_task(request: HttpRequest, payload: TaskIn) -> object:
    return Status(201, tasks.create_task(actor=actor(request), **payload.model_dump()))


@router.get("/tasks/metrics", tags=["tasks"])
def task_metrics(request: HttpRequest) -> object:
    return tasks.task_metrics(actor=actor(request))


@router.patch("/tasks/{task_id}", response=TaskOut, tags=["tasks"])
def update_task(request: HttpRequest, task_id: int, payload: TaskPatch) -> object:
    return tasks.update_task(
        actor=actor(request), task_id=task_id, **payload.model_dump(exclude_unset=True)
    )


@router.post("/tasks/{task_id}/complete", response=TaskOut, tags=["tasks"])
def complete_task(request: HttpRequest, task_id: int, payload: TaskComplete) -> object:
    return tasks.complete_task(actor=actor(request), task_id=task_id, **payload.model_dump())


@router.post("/tasks/{task_id}/send", response=TaskOut, tags=["tasks"])
def send_task_message(request: HttpRequest, task_id: int, payload: TaskSend) -> object:
    """Send the task's script (or `text`) to the customer through the outbox and policy gate
    and close the task with outcome `sent`."""
    return tasks.send_task_message(actor=actor(request), task_id=task_id, **payload.model_dump())
