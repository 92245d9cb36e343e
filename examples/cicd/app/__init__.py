"""The example application (see __main__.py)."""
