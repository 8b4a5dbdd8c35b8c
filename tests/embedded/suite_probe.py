"""A test session that ``test_lifecycle.py`` runs in a subprocess (the suite does not collect
this file: no ``test_`` prefix), to see the suite's own embedded server stop when a run ends
or is interrupted."""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import Engine, text


def test_reaches_the_database(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT 1")) == 1
    hold = os.environ.get("RUNPLANE_PROBE_HOLD")
    if hold:
        # Tell the outer test this worker uses the server, then wait for its signal.
        (Path(hold) / str(os.getpid())).touch()
        time.sleep(600)
