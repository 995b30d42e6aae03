"""The terminal UI of ``sdt3-event monitor``: the live and training monitors (Textual apps), their
stylesheet, and the pure helpers they draw with (renderers, rolling statistics, size guard, log
capture). ``apps/monitor.py`` is the command that starts them; Textual loads only inside its ``run``.
"""
