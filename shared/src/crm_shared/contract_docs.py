"""The published event catalog, generated from the code: `crm docs` writes it, `crm docs --check` fails when stale.

docs/events/<type>.schema.json   a JSON Schema (2020-12) per event type, plus the dead-letter record
docs/asyncapi/<service>.json     an AsyncAPI 3.0 document per service, from its FastStream subscribers and publishers
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faststream.specification import AsyncAPI

from crm_shared.events import EVENT_TYPES, DeadLetter
from crm_shared.settings import SERVICES

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_BASE = "https://crm.example.org/schemas/"
# The documents name the reference deployment's broker, not whatever the generating machine has set.
DOCUMENTED_BOOTSTRAP = "kafka:9092"
DOCS_VERSION = "1.0.0"


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def event_schemas() -> dict[str, str]:
    """File name under docs/events -> its content."""
    files: dict[str, str] = {}
    for type_, cls in sorted(EVENT_TYPES.items()):
        schema = cls.model_json_schema(mode="validation")
        schema = {"$schema": JSON_SCHEMA_DIALECT, "$id": f"{SCHEMA_ID_BASE}{type_}.schema.json", **schema}
        schema["title"] = type_
        files[f"{type_}.schema.json"] = _dump(schema)
    dead_letter = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"{SCHEMA_ID_BASE}crm.deadletter.schema.json",
        **DeadLetter.model_json_schema(mode="validation"),
        "title": "crm.deadletter record",
    }
    files["crm.deadletter.schema.json"] = _dump(dead_letter)
    return files


def asyncapi_document(service: str) -> str:
    """The AsyncAPI 3.0 document of one installed service, built from its broker as the service builds it."""
    app_module = importlib.import_module(f"crm_{service}.app")
    settings_module = importlib.import_module(f"crm_{service}.settings")
    settings_cls = getattr(settings_module, f"{service.capitalize()}Settings")
    create_service: Callable[..., Any] = app_module.create_service
    app = create_service(settings_cls(CRM_KAFKA_BOOTSTRAP=DOCUMENTED_BOOTSTRAP))
    spec = AsyncAPI(
        app.state.runtime.spec,
        title=f"CRM {service}",
        version=DOCS_VERSION,
        description=app.description,
        schema_version="3.0.0",
    )
    return _dump(spec.to_specification().to_jsonable())


def generate() -> dict[Path, str]:
    files = {Path("events") / name: content for name, content in event_schemas().items()}
    for service in SERVICES:
        files[Path("asyncapi") / f"{service}.json"] = asyncapi_document(service)
    return files


def _leftovers(docs_dir: Path, files: dict[Path, str]) -> list[Path]:
    """JSON files under the generated folders that the code no longer generates."""
    found = [p.relative_to(docs_dir) for folder in ("events", "asyncapi") for p in (docs_dir / folder).glob("*.json")]
    return sorted(p for p in found if p not in files)


def stale_files(docs_dir: Path, files: dict[Path, str]) -> list[str]:
    """Files that differ from what the code generates, and files the code no longer generates."""
    stale = [str(p) for p, text in files.items() if not (docs_dir / p).is_file() or (docs_dir / p).read_text() != text]
    return stale + [f"{p} (no longer generated)" for p in _leftovers(docs_dir, files)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crm docs")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--docs-dir", default="docs")
    args = parser.parse_args(argv)
    docs_dir = Path(args.docs_dir)
    files = generate()
    if args.check:
        stale = stale_files(docs_dir, files)
        if stale:
            print("docs/ is stale; run `make docs` and commit the result:\n  " + "\n  ".join(stale))
            return 1
        print(f"docs/ is current ({len(files)} files)")
        return 0
    for leftover in _leftovers(docs_dir, files):
        (docs_dir / leftover).unlink()
    for path, content in files.items():
        target = docs_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    print(f"wrote {len(files)} files under {docs_dir}/")
    return 0
