"""steal.py - the host's steal share for the Python peers' JSON lines, as
bench/steal.h gives it to the C benchmarks: the share of all CPUs' time
that a virtual machine's host held back (the eighth number of /proc/stat's
cpu line) since the previous mark, 0 to 1; 0 where /proc/stat cannot be
read or no tick passed."""


def _sample():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(v) < 4:
        return None
    return sum(v), (v[7] if len(v) >= 8 else 0)


_at = _sample()


def mark():
    """The steal share since the previous mark (or the import), and a new mark."""
    global _at
    now = _sample()
    a, _at = _at, (now or _at)
    if a is None or now is None or now[0] <= a[0] or now[1] < a[1]:
        return 0.0
    return (now[1] - a[1]) / (now[0] - a[0])
