"""Generated test module 22: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.071)
    assert 22 + 0 == 22


def test_case_1():
    time.sleep(0.338)
    assert 22 + 1 == 23


def test_case_2():
    time.sleep(0.256)
    assert 22 + 2 == 24


def test_case_3():
    time.sleep(0.174)
    assert 22 + 3 == 25


def test_case_4():
    time.sleep(0.091)
    assert 22 + 4 == 26
