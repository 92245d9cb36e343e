import pytest

from app import pricing


def test_discount_takes_a_share():
    assert pricing.discount(1000, 15) == 850


def test_no_discount_keeps_the_price():
    assert pricing.discount(999, 0) == 999


@pytest.mark.parametrize("percent", [-1, 101])
def test_discount_out_of_range_is_refused(percent):
    with pytest.raises(ValueError):
        pricing.discount(100, percent)
