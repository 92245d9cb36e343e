"""Generated test module 21: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.276)
    assert 21 + 0 == 21


def test_case_1():
    time.sleep(0.194)
    assert 21 + 1 == 22


def test_case_2():
    time.sleep(0.112)
    assert 21 + 2 == 23


def test_case_3():
    time.sleep(0.379)
    assert 21 + 3 == 24
