"""Reading run directories back for people: tables, learning curves, HTML reports, sweep summaries.

Used by ``encoderlab-compare`` and the sweep report (``encoderlab.cli.sweep_report``); nothing here trains.
"""
