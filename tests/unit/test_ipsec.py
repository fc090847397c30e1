"""Site-to-site IPsec as data (issue 13): endpoints render to strongSwan configuration
that no user string can break, and `swanctl --list-sas --pretty` parses back to states.

The netns tier runs the rendered files in real charon daemons (tests/netns/test_ipsec.py).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privatelink.dataplane.ipsec import (
    ESP_PROPOSALS,
    IKE_PROPOSALS,
    InvalidIpsecConfig,
    IpsecEndpoint,
    ListSasParseError,
    choose_mode,
    conn_name,
    parse_list_sas,
    parse_vici_pretty,
    render_strongswan_conf,
    render_swanctl_conf,
)


def endpoint(**changes: object) -> IpsecEndpoint:
    fields: dict[str, object] = {
        "name": "gw-to-site",
        "local_address": "198.18.0.10",
        "remote_address": "198.18.0.20",
        "local_ts": ("10.1.0.0/16",),
        "remote_ts": ("192.168.1.0/24",),
        "psk": "secret",
        "initiator": False,
    }
    fields.update(changes)
    return IpsecEndpoint(**fields)  # type: ignore[arg-type]


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["gw-to-site", "a", "Conn_1", "x" * 40, "0abc"],
)
def test_a_safe_name_is_kept(name: str) -> None:
    assert conn_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "x" * 41,
        "-leading-dash",
        "_leading",
        "with space",
        "with.dot",  # a dot is a path separator in strongswan.conf lookups
        "a}\nconnections { evil {",
        'quote"d',
        "#comment",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/connections/c1",
        "é",
        "",
        "\ud800",
    ],
)
def test_an_unsafe_name_becomes_safe_and_stays_distinct(name: str) -> None:
    safe = conn_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}", safe), safe
    assert safe != name
    assert conn_name(name) == safe  # deterministic
    assert conn_name(name + "x") != safe


def test_names_that_clean_to_the_same_text_differ_by_their_hash() -> None:
    assert conn_name("a b") != conn_name("a/b")
    assert conn_name("a b").startswith("a_b-")


# --- endpoints ---------------------------------------------------------------------------


def test_an_endpoint_is_normalised() -> None:
    e = endpoint(
        local_address=" 2001:db8:0::1 ",
        remote_address="2001:DB8::2",
        local_ts=("10.1.0.5/16", " fd00::1/64"),
    )
    assert e.local_address == "2001:db8::1"
    assert e.remote_address == "2001:db8::2"
    assert e.local_ts == ("10.1.0.0/16", "fd00::/64")
    assert e.ike_proposals == IKE_PROPOSALS
    assert e.esp_proposals == ESP_PROPOSALS
    assert "secret" not in repr(e)  # the key stays out of logs


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"name": ""}, "needs a name"),
        ({"local_address": "198.18.0.300"}, "local address"),
        ({"local_address": "198.18.0.10\n"}, None),  # whitespace is stripped: valid
        ({"remote_address": "site.example.com"}, "remote address"),
        ({"remote_address": "198.18.0.20 }"}, "remote address"),
        ({"remote_address": "2001:db8::1"}, "different IP versions"),
        ({"remote_address": "198.18.0.10"}, "both 198.18.0.10"),
        ({"local_ts": ()}, "non-empty"),
        ({"local_ts": "10.1.0.0/16"}, "non-empty tuple"),
        ({"remote_ts": ("192.168.1.0/24, 0.0.0.0/0",)}, "remote selector"),
        ({"remote_ts": ("192.168.1.0/33",)}, "remote selector"),
        ({"psk": ""}, "empty"),
        ({"psk": "x" * 513}, "longer than 512"),
        ({"psk": "\ud800"}, "not valid text"),
        ({"ike_proposals": ()}, "at least one"),
        ({"ike_proposals": ("aes256-sha256-modp2048\nx = y",)}, "invalid proposal"),
        ({"esp_proposals": ("AES256",)}, "invalid proposal"),
    ],
)
def test_an_unsafe_endpoint_is_refused(changes: dict[str, object], says: str | None) -> None:
    if says is None:
        endpoint(**changes)
        return
    with pytest.raises(InvalidIpsecConfig, match=re.escape(says)):
        endpoint(**changes)


@pytest.mark.parametrize(("esp", "mode"), [(True, "kernel"), (False, "libipsec")])
def test_the_esp_mode(esp: bool, mode: str) -> None:
    assert choose_mode(esp) == mode


# --- swanctl.conf ------------------------------------------------------------------------

RESPONDER = """\
# Written by privatelink; the keys are hex (0x...).
connections {
  gw-to-site {
    version = 2
    local_addrs = 198.18.0.10
    remote_addrs = 198.18.0.20
    proposals = aes256-sha256-modp2048,aes256-sha256-modp1024,aes256-sha1-modp1024,\
aes128-sha256-modp1024,aes128-sha1-modp1024
    rekey_time = 28800s
    dpd_delay = 30s
    mobike = no
    keyingtries = 1
    local {
      auth = psk
      id = 198.18.0.10
    }
    remote {
      auth = psk
      id = 198.18.0.20
    }
    children {
      gw-to-site {
        local_ts = 10.1.0.0/16,10.2.0.0/24
        remote_ts = 192.168.1.0/24
        esp_proposals = aes256gcm16,aes256-sha256,aes256-sha1,aes128-sha1,\
aes256-sha256-modp2048,aes256-sha256-modp1024,aes256-sha1-modp2048,aes256-sha1-modp1024
        rekey_time = 27000s
        mode = tunnel
        start_action = none
        dpd_action = clear
        close_action = none
      }
    }
  }
}
secrets {
  ike-gw-to-site {
    id-local = 198.18.0.10
    id-remote = 198.18.0.20
    secret = 0x736563726574
  }
}
"""


def test_a_responder_renders_to_swanctl_conf() -> None:
    text = render_swanctl_conf([endpoint(local_ts=("10.1.0.0/16", "10.2.0.0/24"))])
    assert text == RESPONDER


def test_an_initiator_starts_and_restarts() -> None:
    text = render_swanctl_conf([endpoint(initiator=True)])
    assert "start_action = start\n" in text
    assert "dpd_action = restart\n" in text
    assert "close_action = start\n" in text
    assert "keyingtries = 0\n" in text


def test_no_endpoints_is_an_empty_configuration() -> None:
    # --load-all with it unloads every connection and key.
    assert render_swanctl_conf([]) == (
        "# Written by privatelink; the keys are hex (0x...).\nconnections {\n}\nsecrets {\n}\n"
    )


def test_two_endpoints_render_in_order_with_their_own_keys() -> None:
    a = endpoint(name="a", psk="one")
    b = endpoint(name="b", remote_address="198.18.0.30", psk="two")
    text = render_swanctl_conf([a, b])
    assert text.index("  a {") < text.index("  b {")
    for conn, remote, key in (("a", "198.18.0.20", b"one"), ("b", "198.18.0.30", b"two")):
        assert (
            f"ike-{conn} {{\n    id-local = 198.18.0.10\n    id-remote = {remote}\n"
            f"    secret = 0x{key.hex()}\n"
        ) in text


@pytest.mark.parametrize(
    ("others", "says"),
    [
        ([endpoint(name="same", remote_address="198.18.0.30")], "have the same name"),
        ([endpoint(name="other")], "both join 198.18.0.10 and 198.18.0.20"),
    ],
)
def test_clashing_endpoints_are_refused(others: list[IpsecEndpoint], says: str) -> None:
    with pytest.raises(InvalidIpsecConfig, match=says):
        render_swanctl_conf([endpoint(name="same"), *others])


# Every line of a rendered file is a section, its end, or `key = value` with a value of
# this alphabet: no quote, brace, `#`, `=` or space can come from a user.
_LINE = re.compile(r"(?:[A-Za-z0-9_-]+ \{|\}|[a-z_-]+ = [A-Za-z0-9.:/,_-]+|# .*)")


def _structurally_safe(text: str, sections: int) -> None:
    lines = [line.strip() for line in text.splitlines()]
    bad = [line for line in lines if not _LINE.fullmatch(line)]
    assert not bad, bad
    assert sum(line.endswith("{") for line in lines) == sum(line == "}" for line in lines)
    # Exactly the sections we render: nothing opened or closed by a value.
    assert sum(line.endswith("{") for line in lines) == sections


INJECTIONS = [
    'pa"ss word',
    "x\n}\nconnections {\n evil { remote_addrs = %any }\n}",
    "#not a comment",
    "0xdeadbeef",  # looks like hex itself: must still be hex-encoded as text
    "0sYmFzZTY0",  # looks like base64
    '\\" \\n \t',
    "${HOME} $(id) `id`",
    "日本語の鍵",
    "x" * 512,
]


@pytest.mark.parametrize("psk", INJECTIONS)
def test_a_key_is_only_ever_hex(psk: str) -> None:
    text = render_swanctl_conf([endpoint(psk=psk)])
    secret = re.search(r"secret = 0x([0-9a-f]+)\n", text)
    assert secret is not None
    assert bytes.fromhex(secret.group(1)).decode() == psk
    _structurally_safe(text, sections=8)


@settings(max_examples=200, deadline=None)
@given(name=st.text(min_size=1, max_size=80), psk=st.text(min_size=1, max_size=100))
def test_no_name_or_key_can_change_the_structure(name: str, psk: str) -> None:
    try:
        e = endpoint(name=name, psk=psk)
    except InvalidIpsecConfig:  # e.g. surrogates in the key
        return
    text = render_swanctl_conf([e])
    _structurally_safe(text, sections=8)
    assert f"  {conn_name(name)} {{\n" in text


# --- strongswan.conf ---------------------------------------------------------------------


def test_strongswan_conf_with_user_space_esp() -> None:
    text = render_strongswan_conf("/run/pl/gw/charon.vici", "/run/pl/gw/charon.log", True)
    assert "load = random nonce openssl pem pkcs1 x509 revocation constraints pubkey kdf" in text
    assert "kdf kernel-libipsec kernel-netlink socket-default vici\n" in text
    assert "socket = unix:///run/pl/gw/charon.vici\n" in text
    assert "path = /run/pl/gw/charon.log\n" in text
    assert "journal {\n    default = -1\n  }" in text
    assert text.startswith("# Written by privatelink")
    assert text.count("{") == text.count("}")


def test_strongswan_conf_with_kernel_esp() -> None:
    text = render_strongswan_conf("/run/pl/gw/charon.vici", "/run/pl/gw/charon.log", False)
    assert "kernel-libipsec" not in text
    assert "kdf kernel-netlink socket-default vici\n" in text


@pytest.mark.parametrize(
    ("vici", "logfile", "says"),
    [
        ("run/charon.vici", "/run/charon.log", "vici socket"),
        ("/run/a b/charon.vici", "/run/charon.log", "vici socket"),
        ('/run/"x"/charon.vici', "/run/charon.log", "vici socket"),
        ("/run/x}/charon.vici", "/run/charon.log", "vici socket"),
        ("/run/../etc/charon.vici", "/run/charon.log", "vici socket"),
        ("/" + "x" * 100, "/run/charon.log", "longer than 100"),
        ("/run/charon.vici", "/run/charon.log\n}", "log file"),
        ("/run/charon.vici", "/run/#charon.log", "log file"),
    ],
)
def test_unsafe_paths_are_refused(vici: str, logfile: str, says: str) -> None:
    with pytest.raises(InvalidIpsecConfig, match=re.escape(says)):
        render_strongswan_conf(vici, logfile, True)


# --- swanctl --list-sas --pretty ---------------------------------------------------------

# As strongSwan 5.9.8 printed it for an established libipsec tunnel.
ESTABLISHED = """\
list-sa event {
  s2s {
    uniqueid = 1
    version = 2
    state = ESTABLISHED
    local-host = 198.18.0.10
    local-port = 4500
    local-id = 198.18.0.10
    remote-host = 198.18.0.20
    remote-port = 4500
    remote-id = 198.18.0.20
    initiator-spi = 8f2e4e6f7ad738aa
    responder-spi = 2439a1eaf3d667f6
    nat-remote = yes
    nat-any = yes
    encr-alg = AES_CBC
    encr-keysize = 256
    integ-alg = HMAC_SHA2_256_128
    prf-alg = PRF_HMAC_SHA2_256
    dh-group = MODP_2048
    established = 2
    rekey-time = 14136
    child-sas {
      s2s-1 {
        name = s2s
        uniqueid = 1
        reqid = 1
        state = INSTALLED
        mode = TUNNEL
        protocol = ESP
        encap = yes
        spi-in = e4bac7ee
        spi-out = 78066b11
        encr-alg = AES_GCM_16
        encr-keysize = 256
        bytes-in = 252
        packets-in = 3
        bytes-out = 1024
        packets-out = 4
        rekey-time = 3485
        life-time = 3958
        install-time = 2
        local-ts = [
          10.1.0.0/16
        ]
        remote-ts = [
          192.168.1.0/24
        ]
      }
    }
  }
}
list-sas reply {
}
"""


def test_an_established_tunnel() -> None:
    sas = parse_list_sas(ESTABLISHED)
    assert list(sas) == ["s2s"]
    s = sas["s2s"]
    assert s.established and s.installed
    assert (s.local_host, s.remote_host) == ("198.18.0.10", "198.18.0.20")
    (child,) = s.children
    assert child.name == "s2s" and child.installed and child.encap
    assert child.protocol == "ESP"
    assert (child.bytes_in, child.bytes_out, child.packets_in, child.packets_out) == (
        252,
        1024,
        3,
        4,
    )
    assert (child.local_ts, child.remote_ts) == (("10.1.0.0/16",), ("192.168.1.0/24",))
    assert (s.bytes_in, s.bytes_out) == (252, 1024)


CONNECTING = """\
list-sa event {
  s2s {
    uniqueid = 3
    version = 2
    state = CONNECTING
    local-host = 198.18.0.20
    remote-host = 198.18.0.10
    local-id = C=CH, O=strongSwan Test, CN=site
    child-sas {
    }
  }
}
list-sas reply {
}
"""


def test_a_tunnel_still_connecting_is_neither_established_nor_installed() -> None:
    s = parse_list_sas(CONNECTING)["s2s"]
    assert s.ike_states == ("CONNECTING",)
    assert not s.established and not s.installed
    assert s.children == () and s.bytes_in == 0


def test_no_sa_at_all() -> None:
    assert parse_list_sas("list-sas reply {\n}\n") == {}
    assert parse_list_sas("") == {}


def _ike(state: str, children: str) -> str:
    return (
        f"list-sa event {{\n  s2s {{\n    state = {state}\n    child-sas {{\n{children}"
        "    }\n  }\n}\n"
    )


def _child(key: str, state: str, bytes_in: int, bytes_out: int) -> str:
    return (
        f"      {key} {{\n        name = s2s\n        state = {state}\n"
        f"        bytes-in = {bytes_in}\n        bytes-out = {bytes_out}\n      }}\n"
    )


def test_a_rekeying_connection_is_merged_and_its_bytes_summed() -> None:
    text = _ike("REKEYING", _child("s2s-1", "REKEYED", 100, 200)) + _ike(
        "ESTABLISHED", _child("s2s-2", "INSTALLED", 5, 7)
    )
    s = parse_list_sas(text)["s2s"]
    assert s.ike_states == ("REKEYING", "ESTABLISHED")
    assert s.established and s.installed
    assert [c.state for c in s.children] == ["REKEYED", "INSTALLED"]
    assert (s.bytes_in, s.bytes_out) == (105, 207)


def test_an_established_ike_sa_without_installed_child_is_not_installed() -> None:
    s = parse_list_sas(_ike("ESTABLISHED", _child("s2s-1", "DELETING", 1, 1)))["s2s"]
    assert s.established and not s.installed


def test_values_keep_their_spaces_and_unknown_keys_are_kept() -> None:
    ((message, body),) = parse_vici_pretty(CONNECTING)[:1]
    assert message == "list-sa event"
    ike = body["s2s"]
    assert isinstance(ike, dict)
    assert ike["local-id"] == "C=CH, O=strongSwan Test, CN=site"
    assert ike["child-sas"] == {}


def test_swanctl_notes_outside_messages_are_skipped() -> None:
    text = "no IKE_SAs found\n" + ESTABLISHED
    assert list(parse_list_sas(text)) == ["s2s"]


@pytest.mark.parametrize(
    "text",
    [
        "list-sa event {\n  s2s {\n    state = ESTABLISHED\n",  # unterminated
        "}\n",
        "list-sa event {\n  s2s {\n    key = [\n      1.2.3.4\n",  # unterminated list
        "list-sa event {\n  what is this\n}\n",
    ],
)
def test_broken_output_raises(text: str) -> None:
    with pytest.raises(ListSasParseError):
        parse_list_sas(text)


def test_odd_counters_count_as_zero() -> None:
    s = parse_list_sas(
        _ike("ESTABLISHED", _child("s2s-1", "INSTALLED", 0, 0)).replace(
            "bytes-in = 0", "bytes-in = -3"
        )
    )["s2s"]
    assert s.bytes_in == 0
