"""Generated test module 12: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.379)
    assert 12 + 0 == 12


def test_case_1():
    time.sleep(0.297)
    assert 12 + 1 == 13


def test_case_2():
    time.sleep(0.215)
    assert 12 + 2 == 14
