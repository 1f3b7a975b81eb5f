"""The client's address for rate limits: X-Forwarded-For believed only as far as our own proxies wrote it."""

import pytest
from pydantic import ValidationError

from api.common.client_address import client_address, trusted_networks
from config.settings import Settings

PROXIES = trusted_networks("10.0.0.0/8, 192.168.1.7")


def test_with_no_trusted_proxies_the_header_is_ignored():
    assert client_address("203.0.113.9", "1.2.3.4", trusted_networks("")) == "203.0.113.9"


def test_from_an_untrusted_peer_the_header_is_ignored():
    assert client_address("203.0.113.9", "1.2.3.4", PROXIES) == "203.0.113.9"


def test_behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client():
    # The client wrote "6.6.6.6, 1.2.3.4"; our edge proxy appended what it saw, our inner one passed it on.
    assert client_address("192.168.1.7", "6.6.6.6, 1.2.3.4, 198.51.100.20, 10.1.2.3", PROXIES) == "198.51.100.20"


def test_a_hop_that_is_no_address_stands_for_the_proxy_that_passed_it():
    assert client_address("10.0.0.5", "1.2.3.4, not-an-ip", PROXIES) == "10.0.0.5"
    assert client_address("10.0.0.5", "garbage, 10.9.9.9", PROXIES) == "10.9.9.9"


def test_a_request_from_inside_is_its_leftmost_hop():
    assert client_address("10.0.0.5", "10.3.3.3, 10.4.4.4", PROXIES) == "10.3.3.3"


def test_ipv6_proxies_and_clients():
    proxies = trusted_networks("fd00::/8")
    assert client_address("fd00::1", "2001:db8::5, fd00::2", proxies) == "2001:db8::5"


def test_a_bad_proxy_setting_fails_at_startup():
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies="10.0.0.0/8, not-a-network")
