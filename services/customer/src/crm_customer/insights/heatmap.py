"""The cohort retention table drawn as a PNG heat map: a row per cohort, a column per month since the first
order, the share of the cohort that ordered in it. Drawn on a Figure of its own with the Agg canvas (no pyplot,
no display, no state shared between requests)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crm_customer.insights.analysis import Cohort


def cohort_heatmap(rows: Sequence[Cohort], horizon: int) -> bytes:
    """The PNG; months not reached yet are left blank, and an empty table says so."""
    columns = max((len(row.months) for row in rows), default=1)
    columns = max(1, min(columns, horizon + 1))
    figure = Figure(figsize=(min(2.5 + 0.7 * columns, 20), min(1.6 + 0.4 * max(len(rows), 1), 30)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if not rows:
        axes.text(0.5, 0.5, "No first orders in the range", ha="center", va="center")
        axes.set_axis_off()
    else:
        nan = float("nan")
        shares = [[m.share for m in row.months] + [nan] * (columns - len(row.months)) for row in rows]
        image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        for y, row in enumerate(rows):
            for m in row.months:
                colour = "white" if m.share > 0.6 else "black"
                axes.text(m.month, y, f"{m.share:.0%}", ha="center", va="center", fontsize=8, color=colour)
        axes.set_xticks(range(columns), [str(k) for k in range(columns)])
        axes.set_yticks(range(len(rows)), [f"{row.cohort} (n={row.customers})" for row in rows])
        axes.set_xlabel("Months since the first order")
        axes.set_ylabel("Cohort: month of the first order")
        figure.colorbar(image, ax=axes, label="Share of the cohort ordering")
    axes.set_title("Customer retention by month of first order")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
