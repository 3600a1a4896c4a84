"""What one batch of events reads and changes, held in memory so each event sees what the ones before it did.

A handler loads a working set once per batch (one query per collection, over the batch's customers,
orders and campaigns), applies its events in order against it, then writes what changed with one bulk
write per collection. Each lookup answers as the query it stands for would have answered at that point of
a one-by-one application: on what was loaded plus what the earlier events of the batch added. Loading
reaches a little wider than any one event needs (the batch's earliest to latest time); the lookups narrow
it down per event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_marketing import domain, engagement, repository
from crm_marketing.domain import ContactPreferences, Enrolment
from crm_marketing.engagement import Interaction
from crm_marketing.journeys import Journey
from crm_shared.events import InteractionLoggedEvent, ScoreSnapshot
from crm_shared.store import UnitOfWork

TREATED_OR_HELD_OUT = ("contacted", "holdout")
EMPTY: Mapping[str, str] = {}


def _first_appearance(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


@dataclass
class Ledger:
    """The enrolments, campaigns, orders and conversions (and the consents and scores) of a batch's customers."""

    preferences: dict[str, ContactPreferences] = field(default_factory=dict)
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversions: dict[str, dict[str, Any]] = field(default_factory=dict)
    scores_at: dict[str, datetime | None] = field(default_factory=dict)
    enrolments: dict[str, Enrolment] = field(default_factory=dict)
    _of_customer: dict[str, list[Enrolment]] = field(default_factory=dict)
    _episodes: set[tuple[str, str, str]] = field(default_factory=set)
    _new_enrolments: list[Enrolment] = field(default_factory=list)
    _new_conversions: list[dict[str, Any]] = field(default_factory=list)
    _locks: Counter[str] = field(default_factory=Counter)
    _refreshed: dict[str, Journey] = field(default_factory=dict)
    _spent_before: dict[str, Decimal | None] = field(default_factory=dict)
    _spent_now: dict[str, Decimal] = field(default_factory=dict)
    _changed_orders: list[str] = field(default_factory=list)
    _cancelled_orders: list[str] = field(default_factory=list)
    _scores: dict[str, tuple[ScoreSnapshot, datetime]] = field(default_factory=dict)
    _last_orders: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    async def for_enrolments(
        cls,
        uow: UnitOfWork,
        policy: domain.Policy,
        *,
        customers: Sequence[str],
        times: Sequence[datetime],
        episodes: Iterable[tuple[str, str, str]] = (),
        campaign_ids: Iterable[str] = (),
        journeys: Iterable[str] = (),
        scored: Sequence[str] = (),
    ) -> Ledger:
        """What enrolling `customers` at `times` in `episodes` (customer, journey, episode) reads; the scores'
        times of `scored`."""
        ledger = cls()
        if scored:
            found = await repository.attributes_of(uow, scored, ["scores_at"])
            ledger.scores_at = {c: d.get("scores_at") for c, d in found.items()}
        if not customers:
            return ledger
        first, last = min(times), max(times)
        ledger.preferences = await repository.preferences_of(uow, customers)
        ledger._add_loaded(
            await repository.enrolments_for(uow, episodes, customers, ["contacted"], first - policy.cap_period, last)
        )
        ledger.campaigns = await repository.campaigns_for(uow, campaign_ids, journeys, first, last)
        ledger.orders = await repository.orders_for(
            uow, customer_ids=customers, start=first, end=last + policy.attribution_window
        )
        ledger.conversions = await repository.conversions_of(uow, ledger.orders)
        return ledger

    @classmethod
    async def for_orders(
        cls,
        uow: UnitOfWork,
        policy: domain.Policy,
        *,
        order_ids: Sequence[str],
        placed: Sequence[tuple[str, datetime]],
    ) -> Ledger:
        """What recording `order_ids` reads, and attributing the orders `placed` (customer, time)."""
        ledger = cls()
        ledger.orders = await repository.orders_for(uow, order_ids=order_ids)
        if placed:
            times = [at for _, at in placed]
            ledger._add_loaded(
                await repository.enrolments_for(
                    uow,
                    (),
                    [customer for customer, _ in placed],
                    TREATED_OR_HELD_OUT,
                    min(times) - policy.attribution_window,
                    max(times),
                )
            )
        ledger.conversions = await repository.conversions_of(uow, order_ids)
        return ledger

    def _add_loaded(self, enrolments: Iterable[Enrolment]) -> None:
        for enrolment in enrolments:
            self._add(enrolment)

    def _add(self, enrolment: Enrolment) -> None:
        self.enrolments[enrolment.enrolment_id] = enrolment
        self._of_customer.setdefault(enrolment.customer_id, []).append(enrolment)
        self._episodes.add((enrolment.customer_id, enrolment.journey, enrolment.episode))

    # ---------------------------------------------------------------- campaigns

    def ensure_journey_campaign(self, journey: Journey) -> None:
        """The journey's own campaign exists and describes the journey as configured now (written only if not)."""
        wanted = repository.journey_campaign_document(journey)
        doc = self.campaigns.get(journey.campaign)
        if doc is not None and all(doc.get(k) == v for k, v in wanted.items()):
            return
        fresh = {"_id": journey.campaign, **repository.JOURNEY_CAMPAIGN_DEFAULTS}
        self.campaigns[journey.campaign] = {**(doc or fresh), **wanted}
        self._refreshed[journey.campaign] = journey

    def active_campaign(self, journey: str, at: datetime) -> dict[str, Any] | None:
        """The planned campaign running this journey at `at` (the latest started, when several overlap), unless
        archived."""
        running = [
            c
            for c in self.campaigns.values()
            if c.get("kind") == "planned"
            and c.get("journey") == journey
            and c.get("archived_at") is None
            and c.get("starts_at") is not None
            and c.get("ends_at") is not None
            and c["starts_at"] <= at < c["ends_at"]
        ]
        running.sort(key=lambda c: str(c["_id"]))
        running.sort(key=lambda c: c["starts_at"], reverse=True)
        return running[0] if running else None

    def live_campaign(self, campaign_id: str) -> dict[str, Any] | None:
        """The campaign, unless archived."""
        doc = self.campaigns.get(campaign_id)
        return doc if doc is not None and doc.get("archived_at") is None else None

    def spend(self, campaign: dict[str, Any], cost: Decimal) -> bool:
        """Spend `cost` from the campaign's budget unless what is left is less: never overspent."""
        if cost == 0:
            return True
        budget: Decimal | None = campaign.get("budget")
        spent: Decimal | None = campaign.get("spent")
        if budget is not None and (spent is None or not domain.can_spend(budget, spent, cost)):
            return False
        campaign_id: str = campaign["_id"]
        self._spent_before.setdefault(campaign_id, spent)
        self._spent_now[campaign_id] = self._spent_now.get(campaign_id, Decimal(0)) + cost
        campaign["spent"] = (spent or Decimal(0)) + cost
        return True

    # ---------------------------------------------------------------- enrolments

    def enrolled(self, customer_id: str, journey: str, episode: str) -> bool:
        """Whether the customer holds an enrolment in the episode: its own, or one of an id merged into it."""
        return (customer_id, journey, episode) in self._episodes

    def lock_contacts(self, customer_id: str) -> None:
        self._locks[customer_id] += 1

    def recent_capped_contacts(self, customer_id: str, at: datetime, period: timedelta) -> int:
        """Capped contacts of the customer in the period that ends at `at`."""
        return sum(
            1
            for e in self._of_customer.get(customer_id, ())
            if e.status == "contacted" and e.frequency_capped is not False and at - period < e.enrolled_at <= at
        )

    def add_enrolment(self, enrolment: Enrolment) -> None:
        self._add(enrolment)
        self._new_enrolments.append(enrolment)

    def attributable_enrolments(self, customer_id: str, ordered_at: datetime, window: timedelta) -> list[Enrolment]:
        """The customer's contacted or held-out enrolments an order at `ordered_at` counts for, newest first (the
        order of the `by_customer` index)."""
        found = [
            e
            for e in self._of_customer.get(customer_id, ())
            if e.status in TREATED_OR_HELD_OUT and ordered_at - window <= e.enrolled_at < ordered_at
        ]
        return sorted(found, key=lambda e: (e.enrolled_at, e.enrolment_id), reverse=True)

    # ---------------------------------------------------------------- orders and conversions

    def orders_after(self, customer_id: str, enrolled_at: datetime, window: timedelta) -> list[dict[str, Any]]:
        """Orders, not cancelled, placed in the attribution window after an enrolment, oldest first (the order of
        the `by_customer` index)."""
        found = [
            o
            for o in self.orders.values()
            if o.get("customer_id") == customer_id
            and o.get("cancelled_at") is None
            and o.get("ordered_at") is not None
            and enrolled_at < o["ordered_at"] <= enrolled_at + window
        ]
        return sorted(found, key=lambda o: (o["ordered_at"], str(o["_id"])))

    def record_order(
        self,
        order_id: str,
        customer_id: str,
        currency: str,
        total: Decimal,
        at: datetime,
        origin: Mapping[str, str] = EMPTY,
    ) -> dict[str, Any]:
        """The order as marketing knows it now (a cancellation may have arrived first); `origin`:
        `identity.origin_fields` of its event."""
        order = {
            **self.orders.get(order_id, {"_id": order_id}),
            "customer_id": customer_id,
            "currency": currency,
            "total": total,
            "ordered_at": at,
            **origin,
        }
        self._change_order(order)
        return order

    def cancel_order(self, order_id: str, customer_id: str, at: datetime, origin: Mapping[str, str] = EMPTY) -> int:
        """Mark the order cancelled, and its conversions with it; how many conversions it withdrew."""
        order = {
            **self.orders.get(order_id, {"_id": order_id, "customer_id": customer_id, **origin}),
            "cancelled_at": at,
        }
        self._change_order(order)
        withdrawn = 0
        for conversion in self.conversions.values():
            if conversion["order_id"] == order_id and conversion.get("cancelled") is not True:
                conversion["cancelled"] = True
                withdrawn += 1
        self._cancelled_orders.append(order_id)
        return withdrawn

    def _change_order(self, order: dict[str, Any]) -> None:
        self.orders[order["_id"]] = order
        self._changed_orders.append(order["_id"])

    def add_conversion(self, conversion: dict[str, Any]) -> bool:
        """True when the conversion is new."""
        if conversion["_id"] in self.conversions:
            return False
        self.conversions[conversion["_id"]] = {"_id": conversion["_id"], "order_id": conversion["order_id"]}
        self._new_conversions.append(conversion)
        return True

    # ---------------------------------------------------------------- customer attributes

    def record_scores(self, customer_id: str, scores: ScoreSnapshot, at: datetime) -> None:
        """Keep the newest snapshot's segments, by the change's own time, so any arrival order agrees."""
        kept = self.scores_at.get(customer_id)
        if kept is not None and kept > at:
            return
        self.scores_at[customer_id] = at
        self._scores[customer_id] = (scores, at)

    def record_last_order(self, customer_id: str, at: datetime) -> None:
        kept = self._last_orders.get(customer_id)
        self._last_orders[customer_id] = at if kept is None else max(kept, at)

    # ---------------------------------------------------------------- writing

    async def write(self, uow: UnitOfWork) -> None:
        """Everything the batch changed, one bulk write per collection."""
        campaigns = [repository.journey_campaign_write(j) for j in self._refreshed.values()] + [
            repository.spend_write(c, self._spent_before[c], cost) for c, cost in self._spent_now.items()
        ]
        conversions = [repository.conversion_write(c) for c in self._new_conversions]
        if self._cancelled_orders:
            # After the inserts: a conversion the batch found before the cancellation is withdrawn too.
            conversions.append(repository.withdraw_conversions_write(self._cancelled_orders))
        attributes = [repository.scores_write(c, s, at) for c, (s, at) in self._scores.items()] + [
            repository.last_order_write(c, at) for c, at in self._last_orders.items()
        ]
        await repository.write(
            uow,
            {
                repository.CONTACT_LOCKS: [repository.contact_lock_write(c, n) for c, n in self._locks.items()],
                repository.CAMPAIGNS: campaigns,
                repository.ENROLMENTS: [repository.enrolment_write(e) for e in self._new_enrolments],
                repository.ORDERS: [
                    repository.order_write(self.orders[o]) for o in _first_appearance(self._changed_orders)
                ],
                repository.CONVERSIONS: conversions,
                repository.ATTRIBUTES: attributes,
            },
        )


@dataclass
class Engagements:
    """The logged interactions, standing and engagement leads of a batch's customers."""

    standing: dict[str, dict[str, Any]] = field(default_factory=dict)
    handed_over: set[str] = field(default_factory=set)
    _kept: set[str] = field(default_factory=set)
    _of_customer: dict[str, list[Interaction]] = field(default_factory=dict)
    _new_interactions: list[tuple[str, Interaction, str, str, Mapping[str, str]]] = field(default_factory=list)
    _new_leads: list[tuple[str, str, datetime, int, list[str], Mapping[str, str]]] = field(default_factory=list)

    @classmethod
    async def load(
        cls, uow: UnitOfWork, events: Sequence[InteractionLoggedEvent], rule: engagement.EngagementRule
    ) -> Engagements:
        """What counting these interactions reads: the facts kept, those in reach of their windows, the
        customers' standing and whether they were handed over."""
        found = cls()
        if not events:
            return found
        customers = _first_appearance(e.data.customer_id for e in events)
        times = [e.time for e in events]
        docs = await repository.interactions_for(
            uow,
            (repository.interaction_key(e.data.customer_id, e.data.interaction_id) for e in events),
            customers,
            min(times) - rule.window,
            max(times) + rule.window,
        )
        for doc in docs:
            found._kept.add(doc["_id"])
            # A merged id's interaction, now the survivor's, still has the merged id in its key.
            found._kept.add(repository.interaction_key(doc["customer_id"], doc["interaction_id"]))
            found._of_customer.setdefault(doc["customer_id"], []).append(repository.interaction_from_document(doc))
        found.standing = await repository.attributes_of(
            uow, customers, ["lifecycle_stage", "value_tier", "last_order_at"]
        )
        found.handed_over = await repository.handed_over_by_engagement(uow, customers)
        return found

    def record_interaction(
        self,
        customer_id: str,
        interaction: Interaction,
        channel: str,
        event_id: str,
        origin: Mapping[str, str] = EMPTY,
    ) -> bool:
        """Keep the interaction as a fact; False when it was kept before (a duplicate counts once). `origin`:
        `identity.origin_fields` of its event."""
        key = repository.interaction_key(customer_id, interaction.interaction_id)
        if key in self._kept:
            return False
        self._kept.add(key)
        self._of_customer.setdefault(customer_id, []).append(interaction)
        self._new_interactions.append((customer_id, interaction, channel, event_id, origin))
        return True

    def standing_of(self, customer_id: str) -> dict[str, Any]:
        """What marketing knows of the customer's lifecycle: scoring's stage and the last order, if any."""
        return self.standing.get(customer_id, {})

    def interactions_between(self, customer_id: str, start: datetime, end: datetime) -> list[Interaction]:
        """The customer's interactions from `start` to `end`, both included, oldest first."""
        found = [i for i in self._of_customer.get(customer_id, ()) if start <= i.at <= end]
        return sorted(found, key=lambda i: (i.at, i.interaction_id))

    def hand_over(
        self,
        lead_id: str,
        customer_id: str,
        at: datetime,
        score: int,
        interaction_ids: list[str],
        origin: Mapping[str, str] = EMPTY,
    ) -> bool:
        """True when the lead is new: a customer is handed over once (a survivor of a merge that holds the merged
        id's lead was handed over)."""
        if customer_id in self.handed_over:
            return False
        self.handed_over.add(customer_id)
        self._new_leads.append((lead_id, customer_id, at, score, interaction_ids, origin))
        return True

    async def write(self, uow: UnitOfWork) -> None:
        counted: dict[str, tuple[int, datetime]] = {}
        for customer_id, interaction, *_ in self._new_interactions:
            n, latest = counted.get(customer_id, (0, interaction.at))
            counted[customer_id] = (n + 1, max(latest, interaction.at))
        await repository.write(
            uow,
            {
                repository.INTERACTIONS: [repository.interaction_write(*i) for i in self._new_interactions],
                repository.ENGAGEMENT: [repository.engagement_write(c, n, at) for c, (n, at) in counted.items()],
                repository.LEADS: [repository.engagement_lead_write(*lead) for lead in self._new_leads],
            },
        )
