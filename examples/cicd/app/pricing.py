"""Prices in cents: the logic the unit tests cover."""

TAX_PERCENT = 20


def with_tax(cents: int) -> int:
    """The price with tax, rounded half up to a cent."""
    if cents < 0:
        raise ValueError("a price cannot be negative")
    return (cents * (100 + TAX_PERCENT) + 50) // 100


def discount(cents: int, percent: int) -> int:
    """The price after a discount of `percent` (0–100)."""
    if not 0 <= percent <= 100:
        raise ValueError("a discount is between 0 and 100 percent")
    return cents - (cents * percent + 50) // 100


def total(items: list[tuple[int, int]]) -> int:
    """Sum of price × quantity for each (price, quantity)."""
    return sum(price * qty for price, qty in items)
