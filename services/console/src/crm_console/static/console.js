// What every page shares: the CSRF header on htmx requests, and running timers.
"use strict";

document.addEventListener("htmx:configRequest", (event) => {
  const csrf = document.body.dataset.csrf;
  if (csrf) event.detail.headers["X-CSRF-Token"] = csrf;
});

// <span data-timer-due="2026-12-03T10:00:00Z">: time left (or overdue), updated every second.
function formatSpan(ms) {
  const total = Math.floor(Math.abs(ms) / 1000);
  const d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60), s = total % 60;
  const pad = (n) => String(n).padStart(2, "0");
  return (d ? `${d}d ` : "") + `${pad(h)}:${pad(m)}:${pad(s)}`;
}

function tickTimers() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-timer-due]")) {
    if (el.dataset.timerState === "met" || el.dataset.timerState === "paused") continue;
    const due = Date.parse(el.dataset.timerDue);
    if (Number.isNaN(due)) continue;
    const left = due - now;
    el.textContent = left >= 0 ? `${formatSpan(left)} left` : `${formatSpan(left)} overdue`;
    el.classList.toggle("overdue", left < 0);
    el.classList.toggle("due-soon", left >= 0 && left < 3600 * 1000);
  }
}
setInterval(tickTimers, 1000);
document.addEventListener("DOMContentLoaded", tickTimers);
document.addEventListener("htmx:afterSwap", tickTimers);

window.crmConsole = { formatSpan, tickTimers };
