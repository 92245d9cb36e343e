from app import pricing


def test_total_multiplies_by_quantity():
    assert pricing.total([(250, 2), (100, 3)]) == 800


def test_empty_basket_costs_nothing():
    assert pricing.total([]) == 0
