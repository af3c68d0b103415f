"""Browser tests run against the same real gateway and PostgreSQL as the integration tests.

The fixtures are the integration suite's (tests/integration/conftest.py); importing them
here gives this directory its own instances of them for the session.
"""

from tests.integration.conftest import client, database_url, pool, settings  # noqa: F401
