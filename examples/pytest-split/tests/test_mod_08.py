"""Generated test module 08: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.459)
    assert 8 + 0 == 8


def test_case_1():
    time.sleep(0.212)
    assert 8 + 1 == 9


def test_case_2():
    time.sleep(1.015)
    assert 8 + 2 == 10
