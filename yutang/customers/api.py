"""REST handlers for customers, identities, merges, tags, notes and attributes."""

from __future__ import annotations

from django.http import FileResponse, HttpRequest
from ninja import File, Form, Query, Router, Schema, Status
from ninja.files import UploadedFile

from yutang.core.apiauth import actor
from yutang.core.errors import NotFound
from yutang.customers import imports, services
from yutang.customers.schemas import (
    AttributeIn,
    AttributeOut,
    CandidateOut,
    CustomerAccepted,
    CustomerCreated,
    CustomerIn,
    CustomerOut,
    CustomerPage,
    DecisionIn,
    Id,
    ImportOut,
    MergeIn,
    MergeOut,
    NoteIn,
    NoteOut,
    TagChange,
    TagIn,
    TagOut,
)

router = Router(tags=["customers"])


class CustomerFilters(Schema):
    tag_id: Id | None = None
    store_id: Id | None = None
    staff_id: Id | None = None
    channel: str | None = None
    search: str = ""
    phone: str = ""
    cursor: str | None = None
    limit: int = 50


@router.get("/customers", response=CustomerPage)
def list_customers(request: HttpRequest, filters: Query[CustomerFilters]) -> object:
    viewer = actor(request)
    rows, next_cursor = services.list_customers(actor=viewer, **filters.model_dump())
    return {
        "items": [services.present_customer(viewer, c) for c in rows],
        "next_cursor": next_cursor,
    }


@router.post(
    "/customers", response={200: CustomerCreated, 201: CustomerCreated, 202: CustomerAccepted}
)
def create_customer(request: HttpRequest, payload: CustomerIn) -> object:
    viewer = actor(request)
    data = payload.model_dump(exclude_none=True)
    identities = data.pop("identities")
    result = services.create_customer(actor=viewer, identities=identities, profile=data)
    try:
        customer = services.get_customer(actor=viewer, customer_id=result.customer.pk)
    except NotFound:
        # Recorded, but the person belongs to a franchise store whose data HQ may not read.
        return Status(
            202,
            {
                "id": result.customer.pk,
                "created": result.created,
                "merged_ids": [m.absorbed_id for m in result.merges],
            },
        )
    body = {
        **services.present_customer(viewer, customer),
        "created": result.created,
        "merged_ids": [m.absorbed_id for m in result.merges],
    }
    return Status(201 if result.created else 200, body)


@router.post("/merges", response={201: MergeOut})
def merge(request: HttpRequest, payload: MergeIn) -> object:
    return Status(
        201,
        services.manual_merge(
            actor=actor(request), keep_id=payload.keep_id, absorb_id=payload.absorb_id
        ),
    )


@router.post("/merges/{merge_id}/undo", response=MergeOut)
def unmerge(request: HttpRequest, merge_id: int) -> object:
    return services.unmerge(actor=actor(request), merge_id=merge_id)


@router.get("/merge-candidates", response=list[CandidateOut])
def candidates(request: HttpRequest, status: str = "open") -> object:
    return services.list_candidates(actor=actor(request), status=status)


@router.post("/merge-candidates/{candidate_id}/decide", response=CandidateOut)
def decide(request: HttpRequest, candidate_id: int, payload: DecisionIn) -> object:
    return services.decide_candidate(
        actor=actor(request), candidate_id=candidate_id, merge=payload.merge
    )


@router.get("/identities/lookup", response=CustomerOut)
def lookup(request: HttpRequest, kind: str, value: str, namespace: str = "") -> object:
    viewer = actor(request)
    customer = services.lookup_identity(actor=viewer, kind=kind, value=value, namespace=namespace)
    return services.present_customer(viewer, customer)


@router.get("/tags", response=list[TagOut])
def list_tags(request: HttpRequest) -> object:
    return [
        {"id": t.pk, "group": t.group.name, "name": t.name}
        for t in services.list_tags(actor=actor(request))
    ]


@router.post("/tags", response={201: TagOut})
def create_tag(request: HttpRequest, payload: TagIn) -> object:
    viewer = actor(request)
    tag = services.create_tag(
        actor=viewer, brand=viewer.brand, group=payload.group, name=payload.name
    )
    return Status(201, {"id": tag.pk, "group": tag.group.name, "name": tag.name})


@router.post("/customers/{customer_id}/tags", response=list[TagOut])
def change_tags(request: HttpRequest, customer_id: int, payload: TagChange) -> object:
    tags = services.change_customer_tags(
        actor=actor(request), customer_id=customer_id, add=payload.add, remove=payload.remove
    )
    return [{"id": t.pk, "group": t.group.name, "name": t.name} for t in tags]


@router.get("/customers/{customer_id}/notes", response=list[NoteOut])
def list_notes(request: HttpRequest, customer_id: int) -> object:
    return services.customer_notes(actor=actor(request), customer_id=customer_id)


@router.post("/customers/{customer_id}/notes", response={201: NoteOut})
def add_note(request: HttpRequest, customer_id: int, payload: NoteIn) -> object:
    return Status(
        201, services.add_note(actor=actor(request), customer_id=customer_id, body=payload.body)
    )


@router.get("/attributes", response=list[AttributeOut])
def list_attributes(request: HttpRequest) -> object:
    return services.list_attributes(actor=actor(request))


@router.put("/attributes", response=AttributeOut)
def define_attribute(request: HttpRequest, payload: AttributeIn) -> object:
    viewer = actor(request)
    return services.define_attribute(actor=viewer, brand=viewer.brand, **payload.model_dump())


@router.post("/imports", response={202: ImportOut}, tags=["imports"])
def upload_import(
    request: HttpRequest,
    kind: Form[str],
    file: File[UploadedFile],
    mapping: File[UploadedFile] | None = None,
    all_or_nothing: Form[bool] = False,
    encoding: Form[str] = "",
) -> object:
    """Upload a CSV/XLSX file of customers or orders; a worker imports it. Poll
    `GET /imports/{id}` for progress and download bad rows from `/imports/{id}/errors`."""
    viewer = actor(request)
    job = imports.create_import(
        actor=viewer,
        brand=viewer.brand,
        kind=kind,
        upload=file,
        filename=file.name or "upload.csv",
        mapping_json=mapping.read() if mapping else None,
        all_or_nothing=all_or_nothing,
        encoding=encoding,
    )
    return Status(202, imports.job_summary(job))


@router.get("/imports", response=list[ImportOut], tags=["imports"])
def list_imports(request: HttpRequest) -> object:
    return [imports.job_summary(j) for j in imports.list_imports(actor=actor(request))]


@router.get("/imports/{import_id}", response=ImportOut, tags=["imports"])
def get_import(request: HttpRequest, import_id: int) -> object:
    return imports.job_summary(imports.get_import(actor=actor(request), job_id=import_id))


@router.get("/imports/{import_id}/errors", tags=["imports"])
def import_errors(request: HttpRequest, import_id: int) -> FileResponse:
    """The bad rows as CSV (UTF-8 with BOM): row, column, reason."""
    job = imports.get_import(actor=actor(request), job_id=import_id)
    handle = imports.open_error_file(job)
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"import-{job.pk}-errors.csv",
        content_type="text/csv; charset=utf-8",
    )
