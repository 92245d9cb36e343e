"""Generated test module 11: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.235)
    assert 11 + 0 == 11


def test_case_1():
    time.sleep(0.153)
    assert 11 + 1 == 12


def test_case_2():
    time.sleep(0.071)
    assert 11 + 2 == 13


def test_case_3():
    time.sleep(0.338)
    assert 11 + 3 == 14


def test_case_4():
    time.sleep(0.256)
    assert 11 + 4 == 15


def test_case_5():
    time.sleep(0.174)
    assert 11 + 5 == 16
