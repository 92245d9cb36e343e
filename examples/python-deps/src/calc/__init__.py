"""A tiny calculator, the code under test."""


def add(a, b):
    return a + b


def mean(values):
    if not values:
        raise ValueError("mean of nothing")
    return sum(values) / len(values)


def parse_version(text):
    from packaging.version import Version

    return Version(text)
