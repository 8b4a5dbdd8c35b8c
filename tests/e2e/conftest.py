"""The simulated world of tests/e2e/test_simulated.py, for every end-to-end test here."""

from tests.e2e.test_simulated import world  # noqa: F401
