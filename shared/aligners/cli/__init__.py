"""The ``aligners`` command line."""
