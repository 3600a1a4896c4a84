"""Problems every customer-service router answers alike."""

from crm_shared.problems import Problem


def no_customer(customer_id: str) -> Problem:
    """The one answer for a customer that is missing and for one the caller may not see."""
    return Problem(404, "Customer not found", f"no customer {customer_id}")
