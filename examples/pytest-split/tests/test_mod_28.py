"""Generated test module 28: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.235)
    assert 28 + 0 == 28


def test_case_1():
    time.sleep(0.153)
    assert 28 + 1 == 29


def test_case_2():
    time.sleep(0.071)
    assert 28 + 2 == 30
