import pytest

from app import pricing


def test_tax_is_added():
    assert pricing.with_tax(1000) == 1200


def test_tax_rounds_half_up():
    assert pricing.with_tax(1) == 1


def test_negative_prices_are_refused():
    with pytest.raises(ValueError):
        pricing.with_tax(-1)
