"""The evaluation suite: encoders fine-tuned on a named set of tasks, several seeds each, one table.

``spec`` reads what a suite is (tasks, recipes, seeds) from a preset or the user's YAML, ``sources`` says what
each encoder given on the command line is, ``results`` reads the jobs' run directories back into cells, and
``published`` holds reference scores from the literature. ``encoderlab.cli.suite`` runs the jobs and
``encoderlab.reporting.suite_table`` draws the table.
"""
