"""Numbers and phrases for the prose of each page, returned as dicts to glue, and the rows
of each page's table beside the study. Every sentence that depends on a result is chosen here,
with a test, not in page code."""
