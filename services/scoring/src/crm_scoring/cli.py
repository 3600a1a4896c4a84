"""`crm scoring <task>`: the scoring service's operator tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from crm_scoring import backtest, rebuild

TASKS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "backtest": ("fit the customer-base models on a purchase log and compare with a holdout period", backtest.main),
    "rebuild": ("recompute every customer's scores from the stored facts and count those that differ", rebuild.main),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm scoring", description="The scoring service's tasks.")
    parser.add_argument("task", choices=sorted(TASKS), help="; ".join(f"{k}: {v[0]}" for k, v in TASKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the task's options (crm scoring TASK --help)")
    args = parser.parse_args(argv)
    return TASKS[args.task][1](args.options)


if __name__ == "__main__":
    sys.exit(main())
