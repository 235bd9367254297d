"""Journeys (definitions and their published versions), enrollments and the steps they ran,
staff tasks, and the stand-in outbox used until the messaging app lands."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yutang.core.models import Brand, ScopedQuerySet, Staff, Store
from yutang.core.permissions import ROLE_LABELS, Role
from yutang.customers.models import Customer


class BrandQuerySet(ScopedQuerySet):
    """Rows visible brand-wide only (store roles get no journey scope in the matrix)."""

    def _store_q(self, actor: Staff) -> Q:
        return Q(pk__in=[])

    def _self_q(self, actor: Staff) -> Q:
        return Q(pk__in=[])


class Journey(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        LIVE = "live", _("Live")
        PAUSED = "paused", _("Paused")
        ARCHIVED = "archived", _("Archived")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # The definition being edited; publishing freezes a copy into a JourneyVersion.
    draft = models.JSONField(default=dict)
    live_version = models.ForeignKey(
        "JourneyVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    objects = BrandQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["brand", "name"], name="journey_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


class JourneyVersion(models.Model):
    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    # {old step id: new step id}: enrolments of the previous version move here on publish.
    migration = models.JSONField(default=dict, blank=True)
    published_at = models.DateTimeField()
    published_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["journey", "number"]
        constraints = [
            models.UniqueConstraint(fields=["journey", "number"], name="journey_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.journey_id} v{self.number}"


class EnrollmentQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(customer__owner_store__in=actor.store_ids)

    def _self_q(self, actor: Staff) -> Q:
        return Q(customer__owner_staff=actor)


class Enrollment(models.Model):
    class State(models.TextChoices):
        ACTIVE = "active", _("Active")  # a step is due at next_due_at
        WAITING = "waiting", _("Waiting")  # in a wait step until next_due_at (or an event/task)
        COMPLETED = "completed", _("Completed")
        CONVERTED = "converted", _("Converted")
        EXITED = "exited", _("Exited")
        HOLDOUT = "holdout", _("Held out")  # control group: entered, never runs steps

    OPEN_STATES = (State.ACTIVE, State.WAITING)

    # Indexes on Enrollment are few on purpose, and none of them reads `state`: a step that
    # changes no indexed column (a send that moves on at once, the end of a wait, a branch)
    # is a HOT update (no index write, the old version pruned on its page without VACUUM),
    # which needs free room on the page: the table's fillfactor is 50 (migration 0006,
    # PostgreSQL). "Open" in the partial indexes is `next_due_at IS NOT NULL`: an open
    # enrolment (active, waiting) always has a due time, a closed one never has (`_finish`,
    # `enrol`). A wait's start or a finish moves `next_due_at` and writes every index. Every
    # query of the engine, services and consumers is served by the five below (see
    # docs/journeys.md, "Performance"): the journey's by `enrollment_history` (journey
    # first), the customer's by `enrollment_customer`, due steps by `enrollment_due_open`.
    # brand and version have no index: only a brand's or journey's deletion filters on them
    # alone (rare; a scan).
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+", db_index=False)
    journey = models.ForeignKey(
        Journey, on_delete=models.CASCADE, related_name="enrollments", db_index=False
    )
    version = models.ForeignKey(
        JourneyVersion, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    state = models.CharField(max_length=16, choices=State.choices)
    current_step = models.CharField(max_length=40, blank=True)
    # Steps run so far: the attempt key of the next StepRun, so a step revisited by a loop
    # gets its own run while a replayed transaction hits the unique constraint.
    seq = models.PositiveIntegerField(default=0)
    next_due_at = models.DateTimeField(null=True)
    # What a waiting enrolment waits for besides time: {"event": "order.paid"} / {"task": id}.
    waiting_for = models.JSONField(default=dict, blank=True)
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=32, blank=True)
    # When the goal happened within its window (also for held-out customers, for uplift).
    converted_at = models.DateTimeField(null=True, blank=True)
    is_holdout = models.BooleanField(default=False)
    failures = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    source = models.CharField(max_length=64, blank=True)  # trigger event id, "api", "csv", …

    objects = EnrollmentQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["journey", "customer"],
                condition=Q(next_due_at__isnull=False),
                name="one_open_enrollment_per_journey",
            )
        ]
        indexes = [
            # The claim's order (next_due_at, id): a claim reads its batch off the front of
            # the index instead of sorting every due row (all due at one moment after a
            # bulk enrolment) to break ties by id.
            models.Index(
                fields=["next_due_at", "id"],
                condition=Q(next_due_at__isnull=False),
                name="enrollment_due_open",
            ),
            models.Index(fields=["customer"], name="enrollment_customer"),
            models.Index(fields=["journey", "customer", "entered_at"], name="enrollment_history"),
        ]

    def __str__(self) -> str:
        return f"enrollment #{self.pk}"


class StepRun(models.Model):
    """One executed step. Unique on (enrollment, step, attempt key): a step whose transaction
    commits exists once, whatever the number of workers or restarts."""

    # No index of its own: the unique (enrollment, step, attempt) leads with it. No other
    # index either: StepRuns are read per journey (metrics: through the enrolments of the
    # journey, then this unique index) and each index costs every step an insert.
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    step_id = models.CharField(max_length=40)
    step_type = models.CharField(max_length=16)
    attempt_key = models.CharField(max_length=40)
    due_at = models.DateTimeField()
    ran_at = models.DateTimeField()
    outcome = models.CharField(max_length=32, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["enrollment", "step_id", "attempt_key"], name="step_run_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.step_id}#{self.attempt_key}"


class ScheduleSlot(models.Model):
    """A schedule or date trigger's occurrence, claimed once (unique) so two workers or a
    restart never enrol the same slot twice."""

    journey = models.ForeignKey(Journey, on_delete=models.CASCADE, related_name="+")
    slot = models.CharField(max_length=40)
    done_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["journey", "slot"], name="schedule_slot_unique")
        ]

    def __str__(self) -> str:
        return f"{self.journey_id}@{self.slot}"


class TaskQuerySet(ScopedQuerySet):
    def _store_q(self, actor: Staff) -> Q:
        return Q(store__in=actor.store_ids) | Q(assignee=actor)

    def _self_q(self, actor: Staff) -> Q:
        return Q(assignee=actor)


class StaffTask(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        DONE = "done", _("Done")
        SKIPPED = "skipped", _("Skipped")
        OVERDUE = "overdue", _("Overdue")

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    # Assignee: a person (the customer's owner), or a queue (a store and/or a role).
    assignee = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    queue_role = models.CharField(
        max_length=32, blank=True, choices=[(r.value, ROLE_LABELS[r]) for r in Role]
    )
    title = models.CharField(max_length=200)
    script = models.TextField(blank=True)  # rendered from the step's text with variables
    due_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    outcome_code = models.CharField(max_length=32, blank=True)
    outcome_note = models.TextField(blank=True)
    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.SET_NULL, null=True, blank=True, related_name="tasks"
    )
    step_id = models.CharField(max_length=40, blank=True)
    created_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    completed_by = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    # The message sent from the task (outcome "sent": through the outbox and policy gate).
    message = models.ForeignKey(
        "messaging.Message", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [
            models.Index(fields=["brand", "status", "due_at"], name="task_inbox"),
            models.Index(fields=["assignee", "status"], name="task_assignee"),
        ]

    def __str__(self) -> str:
        return self.title


class StaffNotification(models.Model):
    """A reminder sent to a staff member (rows, so the 30/min limit is counted in SQL)."""

    staff = models.ForeignKey(Staff, on_delete=models.CASCADE, related_name="+")
    task = models.ForeignKey(StaffTask, on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField()
    channel = models.CharField(max_length=32)

    class Meta:
        indexes = [models.Index(fields=["staff", "sent_at"], name="staff_notification_rate")]

    def __str__(self) -> str:
        return f"reminder #{self.pk}"
