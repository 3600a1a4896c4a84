// The marketing charts: each <canvas data-chart="<kind>" data-src="<console JSON endpoint>"> is drawn with
// Chart.js from the JSON fetched; a failure is said in the note after the chart, never thrown.
"use strict";

(() => {
  const COLOURS = { treated: "#2458c6", holdout: "#9aa4b5", good: "#1b7f4a", warn: "#a86200", bad: "#b3261e" };
  const percent = (value) => `${(value * 100).toFixed(1)} %`;

  const builders = {
    results(data) {
      const money = (value) => `${Number(value).toFixed(2)} ${data.currency}`;
      return {
        type: "bar",
        data: {
          labels: data.groups.map((g, i) => [g, `${data.contacts[i]} contacts`]),
          datasets: [
            {
              label: "conversion rate",
              data: data.conversion_rate,
              backgroundColor: [COLOURS.treated, COLOURS.holdout],
              yAxisID: "rate",
            },
            {
              label: `revenue per customer (${data.currency})`,
              data: data.revenue_per_customer,
              backgroundColor: ["rgba(36, 88, 198, .35)", "rgba(154, 164, 181, .35)"],
              borderColor: [COLOURS.treated, COLOURS.holdout],
              borderWidth: 1,
              yAxisID: "revenue",
            },
          ],
        },
        options: {
          scales: {
            x: { ticks: { autoSkip: false, maxRotation: 0 } },
            rate: { type: "linear", position: "left", beginAtZero: true, suggestedMax: 0.1,
              ticks: { callback: (v) => percent(v) }, title: { display: true, text: "conversion rate" } },
            revenue: { type: "linear", position: "right", beginAtZero: true, suggestedMax: 1,
              grid: { drawOnChartArea: false }, title: { display: true, text: `revenue per customer (${data.currency})` } },
          },
          plugins: {
            tooltip: {
              callbacks: {
                label: (ctx) => {
                  const i = ctx.dataIndex;
                  return ctx.dataset.yAxisID === "rate"
                    ? `conversion ${percent(ctx.parsed.y)} (${data.conversions[i]} of ${data.contacts[i]})`
                    : `revenue per customer ${money(ctx.parsed.y)} (total ${money(data.revenue[i])})`;
                },
              },
            },
          },
        },
      };
    },

    pareto(data) {
      const points = data.customer_share.map((x, i) => ({ x, y: data.revenue_share[i] }));
      return {
        type: "line",
        data: {
          datasets: [
            { label: "share of revenue of the top customers", data: points, borderColor: COLOURS.treated,
              backgroundColor: "rgba(36, 88, 198, .12)", fill: true, pointRadius: 2, tension: 0 },
            { label: "every customer alike", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], borderColor: COLOURS.holdout,
              borderDash: [4, 4], pointRadius: 0 },
          ],
        },
        options: {
          scales: {
            x: { type: "linear", min: 0, max: 1, ticks: { callback: (v) => percent(v) },
              title: { display: true, text: "top customers" } },
            y: { min: 0, max: 1, ticks: { callback: (v) => percent(v) }, title: { display: true, text: "share of revenue" } },
          },
          plugins: {
            tooltip: { callbacks: { label: (ctx) => `top ${percent(ctx.parsed.x)}: ${percent(ctx.parsed.y)} of revenue` } },
          },
        },
      };
    },

    movements(data) {
      return {
        type: "bar",
        data: {
          labels: data.periods,
          datasets: [
            { label: "new", data: data.new, backgroundColor: COLOURS.good, maxBarThickness: 80 },
            { label: "reactivated", data: data.reactivated, backgroundColor: COLOURS.warn, maxBarThickness: 80 },
            { label: "lost", data: data.lost, backgroundColor: COLOURS.bad, maxBarThickness: 80 },
          ],
        },
        options: {
          scales: {
            x: { stacked: true, title: { display: true, text: data.period } },
            y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "customers" } },
          },
        },
      };
    },

    tierMovements(data) {
      // One bar of upgrades and one of downgrades per period (entries from no tier beside them), each stacked by
      // the tier reached: darker for the higher tier of an upgrade, the lower one of a downgrade.
      const shades = {
        upgrade: { low_value: "#6cbf8f", high_value: COLOURS.good },
        downgrade: { low_value: "#e08a84", potential: COLOURS.bad },
      };
      const words = { upgrade: "up to", downgrade: "down to", entered: "entered" };
      return {
        type: "bar",
        data: {
          labels: data.periods,
          datasets: data.series.map((s) => ({
            label: `${words[s.move] || s.move} ${s.to}`,
            data: s.customers,
            stack: s.move,
            backgroundColor: (shades[s.move] || {})[s.to] || COLOURS.holdout,
            maxBarThickness: 60,
          })),
        },
        options: {
          scales: {
            x: { stacked: true, title: { display: true, text: data.period } },
            y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "customers" } },
          },
          plugins: {
            tooltip: {
              callbacks: {
                footer: (items) => {
                  const i = items[0].dataIndex;
                  return `${data.upgrades[i]} up, ${data.downgrades[i]} down, ${data.entered[i]} entered`;
                },
              },
            },
          },
        },
      };
    },
  };

  function say(canvas, text) {
    const box = canvas.closest(".chart");
    const note = box && box.nextElementSibling;
    if (box) box.hidden = true;
    if (note && note.classList.contains("chart-note")) {
      note.textContent = text;
      note.hidden = false;
    }
  }

  async function draw(canvas) {
    const build = builders[canvas.dataset.chart];
    if (!build || !canvas.dataset.src) return;
    if (typeof window.Chart === "undefined") {
      say(canvas, "The chart library did not load: the figures are in the table.");
      return;
    }
    let data;
    try {
      const response = await fetch(canvas.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      data = await response.json();
      if (!response.ok) {
        say(canvas, `No chart: ${data.title || response.status}${data.detail ? `: ${data.detail}` : ""}`);
        return;
      }
    } catch (error) {
      say(canvas, `No chart: the figures could not be fetched (${error.message}).`);
      return;
    }
    const config = build(data);
    config.options = { responsive: true, maintainAspectRatio: false, animation: false, ...config.options };
    const existing = window.Chart.getChart(canvas);
    if (existing) existing.destroy();
    new window.Chart(canvas, config);
  }

  function drawAll(root) {
    for (const canvas of root.querySelectorAll("canvas[data-chart][data-src]")) draw(canvas);
  }

  document.addEventListener("DOMContentLoaded", () => drawAll(document));
  window.crmMarketing = { drawAll, builders };
})();
