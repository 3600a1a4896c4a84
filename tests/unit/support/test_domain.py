"""Complaints and survey answers: SLA due times by severity, filed once, contradictions refused."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from crm_shared.events import ComplaintFiled, SurveyAnswered
from crm_support import domain
from crm_support.settings import SupportSettings

T0 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
COMPLAINT = ComplaintFiled(
    complaint_id="T-1", customer_id="C-1", dimension="service", severity="high", summary="The engineer did not come."
)
ANSWER = SurveyAnswered(survey_id="S-1", customer_id="C-1", kind="csat", score=2)


@pytest.mark.parametrize(("severity", "hours"), [("high", 4), ("medium", 24), ("low", 72)])
def test_the_sla_is_due_after_the_default_target_of_the_severity(severity: domain.Severity, hours: int) -> None:
    complaint = domain.file_complaint(None, COMPLAINT.model_copy(update={"severity": severity}), T0)
    assert complaint.filed_at == T0
    assert complaint.sla_due_at == T0 + timedelta(hours=hours)
    assert complaint.status == "open"


@pytest.mark.parametrize(("severity", "due"), [("high", timedelta(hours=1.5)), ("medium", timedelta(hours=8))])
def test_configured_targets_set_the_due_time(
    monkeypatch: pytest.MonkeyPatch, severity: domain.Severity, due: timedelta
) -> None:
    monkeypatch.setenv("CRM_SUPPORT_SLA_HIGH_HOURS", "1.5")
    monkeypatch.setenv("CRM_SUPPORT_SLA_MEDIUM_HOURS", "8")
    targets = SupportSettings().sla_targets
    complaint = domain.file_complaint(None, COMPLAINT.model_copy(update={"severity": severity}), T0, targets)
    assert complaint.sla_due_at == T0 + due


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CRM_SUPPORT_SLA_HIGH_HOURS", "0", "greater than 0"),
        ("CRM_SUPPORT_SLA_LOW_HOURS", "-3", "greater than 0"),
        ("CRM_SUPPORT_SLA_MEDIUM_HOURS", "nan", "finite number"),
        ("CRM_SUPPORT_SLA_HIGH_HOURS", "48", r"expected high <= medium <= low hours, got 48\.0 / 24\.0 / 72\.0"),
    ],
)
def test_bad_sla_targets_are_refused_at_start_up(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        SupportSettings()


def test_the_sla_is_within_up_to_the_due_time_and_breached_after_it() -> None:
    complaint = domain.file_complaint(None, COMPLAINT, T0)
    due = T0 + timedelta(hours=4)
    assert domain.sla_state(complaint, T0) == "within"
    assert domain.sla_state(complaint, due) == "within"
    assert domain.sla_state(complaint, due + timedelta(microseconds=1)) == "breached"


def test_filing_the_same_complaint_again_changes_nothing() -> None:
    complaint = domain.file_complaint(None, COMPLAINT, T0)
    again = domain.file_complaint(complaint, COMPLAINT, T0 + timedelta(days=1), domain.SlaTargets(high=timedelta(1)))
    assert again == complaint


def test_a_complaint_id_filed_again_with_other_content_is_refused() -> None:
    complaint = domain.file_complaint(None, COMPLAINT, T0)
    other = COMPLAINT.model_copy(update={"severity": "low"})
    with pytest.raises(domain.ComplaintRejected, match=r"^complaint T-1 was already filed with different content$"):
        domain.file_complaint(complaint, other, T0)


def test_a_complaint_id_of_another_customer_is_refused() -> None:
    complaint = domain.file_complaint(None, COMPLAINT, T0)
    with pytest.raises(domain.ComplaintRejected, match=r"^complaint T-1 belongs to customer C-1, not C-2$"):
        domain.file_complaint(complaint, COMPLAINT.model_copy(update={"customer_id": "C-2"}), T0)


def test_a_survey_answer_is_kept_once_with_its_time() -> None:
    answer = domain.record_survey_answer(None, ANSWER, T0)
    assert (answer.answered, answer.answered_at) == (ANSWER, T0)
    assert domain.record_survey_answer(answer, ANSWER, T0 + timedelta(hours=1)) == answer


def test_a_survey_answered_again_differently_is_refused() -> None:
    answer = domain.record_survey_answer(None, ANSWER, T0)
    with pytest.raises(domain.ComplaintRejected, match=r"^survey S-1 was already answered with different content$"):
        domain.record_survey_answer(answer, ANSWER.model_copy(update={"score": 5}), T0)
    with pytest.raises(domain.ComplaintRejected, match=r"^survey S-1 belongs to customer C-1, not C-9$"):
        domain.record_survey_answer(answer, ANSWER.model_copy(update={"customer_id": "C-9"}), T0)


def test_a_complaint_is_filed_to_the_group_the_channel_routed_it_to_and_unassigned() -> None:
    routed = domain.file_complaint(None, COMPLAINT.model_copy(update={"group": "billing"}), T0)
    assert (routed.group, routed.assignee_id) == ("billing", None)
    assert (domain.file_complaint(None, COMPLAINT, T0).group, COMPLAINT.group) == (None, None)
