"""Generated test module 14: tests that take a known time, so a split
has something to balance."""
import time
import pytest


def test_case_0():
    time.sleep(0.318)
    assert 14 + 0 == 14


def test_case_1():
    time.sleep(0.235)
    assert 14 + 1 == 15


def test_case_2():
    time.sleep(0.153)
    assert 14 + 2 == 16


def test_case_3():
    time.sleep(0.071)
    assert 14 + 3 == 17


def test_case_4():
    time.sleep(0.338)
    assert 14 + 4 == 18
