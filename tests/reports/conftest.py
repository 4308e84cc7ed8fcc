import pytest

from tests.reports.browser import install


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed by the test setup when missing (skipped, with the reason, only where it cannot be)."""
    reason = install()
    if reason:
        pytest.skip(f"no chromium: {reason}")
