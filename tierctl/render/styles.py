"""Colours of messages and states in the terminal and the dashboard, named by what they mean.

One place, so "failed" is the same red in `tierctl run`, the campaign list, the run panel and the
schedule editor. Tier colours are not here: they are part of the tier table (tierctl.core.vocab),
shared with the PNG figures.
"""

ERROR = "#ef5350"  # failed, refused, invalid, broken
WARNING = "#ffa726"  # interrupted, unsaved, needs a look
ACTIVE = "#42a5f5"  # running, starting
OK = "#66bb6a"  # done, complete, saved
