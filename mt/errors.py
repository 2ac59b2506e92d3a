"""The one error type for everything a user can cause (bad config, bad file, missing run)."""

__all__ = ["MTError"]


class MTError(Exception):
    """A problem the user can fix. Its message is one line naming the file/line/key and what would be valid.

    The CLI prints it as ``error: <message>`` and exits with status 2; it never shows a traceback.
    """
