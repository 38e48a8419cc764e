"""Progress of a long run of N steps, on stderr, with the time left.

On a terminal: one line, rewritten after every step (a bar, the count, the step just done, the
time spent and the time left). Otherwise (a log, CI): one line every INTERVAL seconds and one at
the end. Lines passed with note() (failures, warnings) always print, on a line of their own."""

import sys
import time

INTERVAL = 10.0


def clock(seconds):
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


class Progress:
    def __init__(self, total, what="runs", stream=None, tty=None, interval=INTERVAL, cycle=None):
        """cycle: steps per repetition, when the same steps repeat (a step then is expected to take
        as long as it did in the previous repetition)."""
        self.total = max(total, 1)
        self.cycle = cycle if cycle and cycle > 0 else None
        self.took = []  # seconds each step took
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self.start = time.monotonic()
        self.last_print = self.start
        self.last_step = self.start
        self.done = 0
        self.open_line = False  # a rewritten line is on screen

    def left(self, now):
        """Seconds left: each step left takes what the same step took in the last repetition, or
        (in the first one) the mean time of a step so far."""
        if not self.done:
            return None
        mean = (now - self.start) / self.done
        est = 0.0
        for j in range(self.done, self.total):
            k = j
            if self.cycle:
                while k >= self.done and k - self.cycle >= 0:
                    k -= self.cycle
            est += self.took[k] if k < self.done else mean
        return est

    def line(self, now, detail):
        left = self.left(now)
        left_s = "?" if left is None else clock(left)
        head = f"{self.done}/{self.total} {self.what}, {clock(now - self.start)} spent, about {left_s} left"
        return head + (f"  ({detail})" if detail else "")

    def step(self, detail=""):
        """One step done; detail says which (printed with the progress line)."""
        self.done += 1
        now = time.monotonic()
        self.took.append(now - self.last_step)
        self.last_step = now
        if self.tty:
            width = 30
            fill = int(width * self.done / self.total)
            bar = "#" * fill + "." * (width - fill)
            text = f"[{bar}] " + self.line(now, detail)
            self.stream.write("\r\033[K" + text[:160])
            self.open_line = True
            if self.done >= self.total:
                self.stream.write("\n")
                self.open_line = False
            self.stream.flush()
        elif now - self.last_print >= self.interval or self.done >= self.total:
            self.stream.write("progress: " + self.line(now, detail) + "\n")
            self.stream.flush()
            self.last_print = now

    def note(self, text):
        """A line that must be seen (a failure): printed at once, above the progress line."""
        if self.open_line:
            self.stream.write("\r\033[K")
            self.open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()
