"""The one exception type for mistakes a user can fix.

Entry points catch it and print its message as a single line on stderr with a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or configuration. The message names the problem and the fix, in one line."""
