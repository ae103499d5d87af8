"""The read-only run pages: ``orchestrack ui`` serves them, ``orchestrack report`` writes them to one file.

:mod:`~orchestrack.ui.pages` renders run records to HTML (pure functions), :mod:`~orchestrack.ui.charts`
draws metric series as SVG, :mod:`~orchestrack.ui.artifacts` decides which artifact bytes may be
served, and :mod:`~orchestrack.ui.server` is the standard library HTTP server around them.
"""
