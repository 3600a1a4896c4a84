// The sales pages: drag a card to another stage, draw the forecast chart, add lines to a quote.
"use strict";

(() => {
  const CARD = "[data-testid=opportunity-card]";
  const COLUMN = "[data-testid=stage-column]";
  let dragged = null;

  const columnOf = (node) => (node instanceof Element ? node.closest(COLUMN) : null);
  const clearTargets = () => {
    for (const el of document.querySelectorAll(`${COLUMN}.drop-target`)) el.classList.remove("drop-target");
  };

  // Listeners on the document: the board is swapped in anew after every move.
  document.addEventListener("dragstart", (event) => {
    const card = event.target instanceof Element ? event.target.closest(CARD) : null;
    if (!card || !card.dataset.moveUrl) return;
    dragged = card;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.opportunityId);
    card.classList.add("dragging");
  });

  document.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    clearTargets();
  });

  document.addEventListener("dragover", (event) => {
    const column = columnOf(event.target);
    if (!dragged || !column) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    if (!column.classList.contains("drop-target")) {
      clearTargets();
      column.classList.add("drop-target");
    }
  });

  document.addEventListener("dragleave", (event) => {
    const column = columnOf(event.target);
    if (column && !column.contains(event.relatedTarget)) column.classList.remove("drop-target");
  });

  document.addEventListener("drop", (event) => {
    const column = columnOf(event.target);
    const card = dragged;
    if (!card || !column) return;
    event.preventDefault();
    clearTargets();
    if (column === columnOf(card)) return;
    const board = document.getElementById("board");
    // The same request as the card's button, to the stage of the column it was dropped on.
    window.htmx.ajax("POST", card.dataset.moveUrl, {
      source: card,
      target: "#board",
      swap: "outerHTML",
      values: { stage: column.dataset.stage, pipeline_id: board.dataset.pipelineId, mine: board.dataset.mine },
      headers: { "X-CSRF-Token": document.body.dataset.csrf || "" },
    });
  });

  const COLOURS = {
    closed: "#1b7f4a",
    commit: "#2458c6",
    best_case: "#7aa2e8",
    pipeline: "#c5d3ee",
    quota: "#b3261e",
  };

  function drawForecast() {
    const canvas = document.querySelector("canvas[data-testid=forecast-chart]");
    if (!canvas || !canvas.dataset.src || !window.Chart || window.Chart.getChart(canvas)) return;
    fetch(canvas.dataset.src, { headers: { Accept: "application/json" } })
      .then((answer) => (answer.ok ? answer.json() : Promise.reject(new Error(`${answer.status}`))))
      .then((spec) => chart(canvas, spec))
      .catch((error) => {
        const note = document.createElement("p");
        note.className = "muted";
        note.textContent = `The chart could not be drawn (${error.message}); the table below has the figures.`;
        canvas.replaceWith(note);
      });
  }

  function chart(canvas, spec) {
    const money = (value) =>
      Number(value).toLocaleString(undefined, { minimumFractionDigits: 0, maximumFractionDigits: 0 });
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map((d) =>
          d.key === "quota"
            ? { type: "line", label: d.label, data: d.data, stack: "quota", borderColor: COLOURS.quota,
                backgroundColor: COLOURS.quota, pointRadius: 4, borderDash: [6, 4], spanGaps: true }
            : { label: d.label, data: d.data, stack: "forecast", backgroundColor: COLOURS[d.key] },
        ),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, title: { display: true, text: spec.currency },
               ticks: { callback: money } },
        },
        plugins: {
          tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${money(ctx.parsed.y)} ${spec.currency}` } },
        },
      },
    });
  }

  function enableAddLine() {
    for (const button of document.querySelectorAll("[data-add-line]")) {
      button.hidden = false;
      button.addEventListener("click", () => {
        const lines = button.closest("fieldset").querySelector(".quote-lines");
        const last = lines.querySelector(".quote-line:last-child");
        const copy = last.cloneNode(true);
        for (const input of copy.querySelectorAll("input")) input.value = "";
        lines.appendChild(copy);
        copy.querySelector("input").focus();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    drawForecast();
    enableAddLine();
  });
})();
