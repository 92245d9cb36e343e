"""Generated test module 16: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.768)
    assert 16 + 0 == 16


def test_case_1():
    time.sleep(0.521)
    assert 16 + 1 == 17


def test_case_2():
    time.sleep(0.274)
    assert 16 + 2 == 18
