"""The complaint document keeps its group and assignee at its top level (where row-level access filters), and a
document written before complaints had them reads as unrouted and unassigned."""

from dataclasses import replace
from datetime import UTC, datetime

from crm_shared.events import ComplaintFiled
from crm_support import domain, repository

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
FILED = ComplaintFiled(
    complaint_id="T-1", customer_id="C-1", dimension="service", severity="high", summary="The engineer did not come."
)


def test_group_and_assignee_are_top_level_fields_of_the_document() -> None:
    complaint = replace(domain.file_complaint(None, FILED.model_copy(update={"group": "tech"}), T0), assignee_id="a-7")
    doc = repository.complaint_to_document(complaint)
    assert (doc["group"], doc["assignee_id"], doc["filed"]["group"]) == ("tech", "a-7", "tech")
    assert repository.complaint_from_document(doc) == complaint


def test_a_document_written_before_groups_reads_as_unrouted_and_unassigned() -> None:
    complaint = domain.file_complaint(None, FILED, T0)
    doc = repository.complaint_to_document(complaint)
    old = {k: v for k, v in doc.items() if k not in ("group", "assignee_id")}
    old["filed"] = {k: v for k, v in doc["filed"].items() if k != "group"}
    assert repository.complaint_from_document(old) == complaint
