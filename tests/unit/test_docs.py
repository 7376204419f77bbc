"""docs/protocol.md documents exactly the catalogue the code enforces."""

from pathlib import Path

from protocol.catalogue import CATALOGUE, ValueKind
from protocol.decoding import RejectReason

PROTOCOL_DOC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def test_every_metric_is_documented_with_its_unit_and_range() -> None:
    for spec in CATALOGUE.values():
        assert f"Expected reporting interval: **{spec.expected_interval_s} s**" in PROTOCOL_DOC
        for metric in spec.metrics.values():
            valid = (
                "true / false"
                if metric.kind is ValueKind.FLAG
                else f"{metric.minimum:g} .. {metric.maximum:g}"
            )
            row = f"| `{metric.name}` | {metric.unit or '-'} | {valid} | {metric.kind} |"
            assert row in PROTOCOL_DOC, f"docs/protocol.md lacks or misstates {metric.name}"


def test_every_rejection_reason_is_documented() -> None:
    for reason in RejectReason:
        assert f"| `{reason}` |" in PROTOCOL_DOC
