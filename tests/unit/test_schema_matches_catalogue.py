"""The telemetry tables have a column for every metric of the catalogue."""

import importlib.util
from pathlib import Path

from protocol.catalogue import CATALOGUE

VERSIONS = Path(__file__).parents[2] / "storage" / "migrations" / "versions"


def migrated_metric_columns() -> dict[str, set[str]]:
    """Metric columns per class after every migration (each may declare METRICS or
    ADDED_METRICS)."""
    columns: dict[str, set[str]] = {}
    for path in sorted(VERSIONS.glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for device_class, metrics in getattr(module, "METRICS", {}).items():
            columns.setdefault(device_class, set()).update(metrics)
        for device_class, metrics in getattr(module, "ADDED_METRICS", {}).items():
            columns.setdefault(device_class, set()).update(metrics)
    return columns


def test_every_catalogue_metric_has_a_column_and_no_column_is_unknown() -> None:
    assert migrated_metric_columns() == {
        device_class.value: set(spec.metrics) for device_class, spec in CATALOGUE.items()
    }


def test_the_latest_full_list_of_columns_follows_the_catalogue_order() -> None:
    """The migration that last rebuilt the rollups and views lists every class's columns in
    the catalogue's order (the order COPY and the writer use)."""
    latest: dict[str, tuple[str, ...]] = {}
    for path in sorted(VERSIONS.glob("[0-9]*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        latest = getattr(module, "METRICS_NOW", getattr(module, "METRICS", latest))
    assert latest == {
        device_class.value: tuple(spec.metrics) for device_class, spec in CATALOGUE.items()
    }
