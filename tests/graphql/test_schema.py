"""The committed schema (docs/schema.graphql) is what `taskhub graphql-schema` exports (CI check)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from taskhub.cli import app

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "schema.graphql"


def test_committed_schema_matches_the_export() -> None:
    result = CliRunner().invoke(app, ["graphql-schema"])
    assert result.exit_code == 0, result.output
    assert result.output == SCHEMA_FILE.read_text(), (
        "docs/schema.graphql is stale: run `.venv/bin/taskhub graphql-schema > docs/schema.graphql`"
    )
    assert "tasks(first: Int! = 20, after: String = null" in result.output
    assert "createTask(input: CreateTaskInput!, idempotencyKey: String = null): CreateTaskPayload\n" in result.output
