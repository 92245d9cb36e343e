"""Generated test module 04: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.276)
    assert 4 + 0 == 4


def test_case_1():
    time.sleep(0.194)
    assert 4 + 1 == 5


def test_case_2():
    time.sleep(0.112)
    assert 4 + 2 == 6
