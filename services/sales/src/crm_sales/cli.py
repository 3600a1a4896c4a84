"""`crm sales <task>`: the sales service's operator tasks, on its database (CRM_MONGO_URI, CRM_SALES_DB)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

from tqdm import tqdm

from crm_sales.leads import handlers, importing
from crm_sales.settings import SalesSettings
from crm_shared.events import LeadSource, utc_now
from crm_shared.store import Store
from crm_shared.transport import mongo_client_options

UNREADABLE = 2


def errors_path_for(file: Path) -> Path:
    """Where the per-row error report goes by default: next to the file, `<name>.errors.csv`."""
    return file.with_name(f"{file.stem}.errors.csv")


async def run_import(
    settings: SalesSettings, parsed: importing.ParsedFile, progress: Callable[[int], None]
) -> handlers.ImportSummary:
    store = Store.connect(settings.mongo_uri, settings.database_name, client_options=mongo_client_options(settings))
    try:
        return await handlers.import_leads(
            store, parsed, utc_now(), progress=progress, match_secret=settings.match_secret
        )
    finally:
        await store.close()


def import_leads(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="crm sales import-leads",
        description="Import leads from a CSV file into the sales database (CRM_MONGO_URI, CRM_SALES_DB), assigned "
        "by the territories' rules. Columns: " + ", ".join(importing.COLUMNS) + ". Exit status 0 when every row "
        "was imported, 1 when some were rejected (see the error report), 2 when the file cannot be read.",
    )
    parser.add_argument("file", type=Path, help="the CSV file (UTF-8, header row first)")
    parser.add_argument(
        "--source",
        choices=get_args(LeadSource),
        default="directory_import",
        help="the source of rows without one (default directory_import)",
    )
    parser.add_argument("--errors", type=Path, help="where the per-row error report goes (default FILE.errors.csv)")
    args = parser.parse_args(argv)
    file: Path = args.file
    try:
        parsed = importing.parse_leads(importing.decode(file.read_bytes()), args.source)
    except OSError as exc:
        print(f"crm sales import-leads: cannot read {file}: {exc.strerror or exc}", file=sys.stderr)
        return UNREADABLE
    except importing.UnreadableFile as exc:
        print(f"crm sales import-leads: {file} is not a leads CSV: {exc}", file=sys.stderr)
        return UNREADABLE
    settings = SalesSettings()
    with tqdm(total=parsed.total, unit="row", desc="leads", file=sys.stderr) as bar:
        summary = asyncio.run(run_import(settings, parsed, bar.update))
    print(
        f"{summary.imported} imported, {summary.duplicates} duplicates, {len(summary.rejected)} rejected "
        f"(duplicates included) of {parsed.total} rows"
    )
    if not summary.rejected:
        return 0
    report: Path = args.errors or errors_path_for(file)
    report.write_text(importing.error_report(summary.rejected), encoding="utf-8")
    print(f"the rejected rows and why: {report}")
    return 1


TASKS: dict[str, tuple[str, Callable[[Sequence[str]], int]]] = {
    "import-leads": ("import leads from a CSV file, with a progress bar and a per-row error report", import_leads),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm sales", description="The sales service's tasks.")
    parser.add_argument("task", choices=sorted(TASKS), help="; ".join(f"{k}: {v[0]}" for k, v in TASKS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the task's options (crm sales TASK --help)")
    args = parser.parse_args(argv)
    return TASKS[args.task][1](args.options)


if __name__ == "__main__":
    sys.exit(main())
