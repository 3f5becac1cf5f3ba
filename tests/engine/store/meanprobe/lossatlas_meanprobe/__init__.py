"""A third-party probe whose ``finalize`` uses the xarray idioms a user naturally writes."""
