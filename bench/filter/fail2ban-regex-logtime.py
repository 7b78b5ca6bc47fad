"""fail2ban-regex with its caches on the log's clock.

fail2ban's caches (Utils.Cache, among them the multi-line <F-MLFID> cache: 100 entries, 5 minutes)
expire by the wall clock. A live fail2ban reads lines as they are written, so its wall clock is
the log's; fail2ban-regex reads a file of days in a minute, so nothing it keeps ever expires by
time. This runs fail2ban-regex unchanged, except that the clock Utils.Cache reads is the time of
the last dated line, which is what fleetban counts in. Arguments as for fail2ban-regex; needs
PYTHONPATH at the unpacked fail2ban package (see bench/filter/README.md).
"""
import sys
import time as wall

from fail2ban.server import datedetector, utils


class LogClock:
    """The `time` module as Utils.Cache sees it: time() is the latest line's time."""

    now = None

    def time(self):
        return wall.time() if self.now is None else self.now

    def __getattr__(self, name):
        return getattr(wall, name)


clock = LogClock()
utils.time = clock
original_get_time = datedetector.DateDetector.getTime


def get_time(self, line, timeMatch=None):
    # Filter.processLine finds a line's date before it looks for failures, so the caches see
    # the line's own time.
    found = original_get_time(self, line, timeMatch)
    if found is not None:
        clock.now = found[0]
    return found


datedetector.DateDetector.getTime = get_time

from fail2ban.client.fail2banregex import exec_command_line  # noqa: E402 (after the clock is in place)

sys.argv[0] = "fail2ban-regex"
exec_command_line()
