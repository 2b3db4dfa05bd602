"""Suite-wide pytest settings."""


def pytest_collection_modifyitems(config, items):
    """Start the longest test (the docs site build, ~3 minutes) first.

    With ``pytest -n 2`` a worker that draws it near the end of the run would leave the other idle
    for minutes; started first, it runs beside the rest of the suite.
    """
    items.sort(key=lambda item: "test_site_builds" not in item.nodeid)  # stable: the rest keep their order
