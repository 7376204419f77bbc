"""The schema head read from the migration files is alembic's own."""

from __future__ import annotations

import subprocess
import sys

from alembic.script import ScriptDirectory

from storage.migrate import _config
from storage.revision import head_revision


def test_the_head_read_without_alembic_is_alembics() -> None:
    assert head_revision() == ScriptDirectory.from_config(_config()).get_current_head()


def test_checking_the_schema_loads_neither_alembic_nor_sqlalchemy() -> None:
    """Every service checks the schema at start; alembic would stay in its memory (44 MiB)."""
    code = (
        "import sys; from smartcity.cli_support import require_current_schema;"
        "from storage.revision import head_revision; head_revision();"
        "print(sorted({'alembic', 'sqlalchemy'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
