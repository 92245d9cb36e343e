"""Generated test module 27: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.091)
    assert 27 + 0 == 27


def test_case_1():
    time.sleep(0.359)
    assert 27 + 1 == 28


def test_case_2():
    time.sleep(0.276)
    assert 27 + 2 == 29


def test_case_3():
    time.sleep(0.194)
    assert 27 + 3 == 30


def test_case_4():
    time.sleep(0.112)
    assert 27 + 4 == 31


def test_case_5():
    time.sleep(0.379)
    assert 27 + 5 == 32
