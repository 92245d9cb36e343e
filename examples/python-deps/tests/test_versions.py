from calc import parse_version


def test_versions_compare():
    assert parse_version("1.10") > parse_version("1.9")
