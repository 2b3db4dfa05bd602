"""The shared bad-input table: one ``rows_<family>.py`` per family, each defining ``ROWS``.

A row is one public function called with one bad input, the exception type it must raise and
a regex fragment of the message that names the argument. ``tests/test_bad_inputs.py`` runs every
row and checks that every public function of every paper module has at least one.
"""
