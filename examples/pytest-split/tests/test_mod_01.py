"""Generated test module 01: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.194)
    assert 1 + 0 == 1


def test_case_1():
    time.sleep(0.112)
    assert 1 + 1 == 2


def test_case_2():
    time.sleep(0.379)
    assert 1 + 2 == 3


def test_case_3():
    time.sleep(0.297)
    assert 1 + 3 == 4
