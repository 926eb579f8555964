"""mpc_export.deploy.certs: a fresh root CA and one certificate per player, in the form FANNG-MPC reads
(PEM; the key file beside each certificate, `.crt` -> `.key`; the subject's common name "P1".."P3", which
every player compares with NetworkData.txt at connection time). Oracles: the `openssl` command line and
a real mutual-TLS handshake through Python's ssl module (OpenSSL, like the runtime)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from conftest import SHARED
from mpc_export.deploy.certs import (FANNG_TEST_CERT_FINGERPRINTS, is_published_test_certificate, make_certificates,
                                     validate_hosts)
from mpc_export.errors import UserError

TEST_CERT_STORE = SHARED / "tools" / "fanng-runtime" / "Auto-Test-Data" / "Cert-Store"
OPENSSL = shutil.which("openssl")
need_openssl = pytest.mark.skipif(OPENSSL is None, reason="no openssl command line tool")
HOSTS = ["10.0.0.1", "bob.example.org", "127.0.0.1"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    out = tmp_path_factory.mktemp("certs") / "store"
    make_certificates(HOSTS, out)
    return out


def openssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_files_and_modes(certs):
    names = sorted(p.name for p in certs.iterdir())
    assert names == ["Player1.crt", "Player1.key", "Player2.crt", "Player2.key", "Player3.crt", "Player3.key",
                     "RootCA.crt", "RootCA.key"]
    for path in certs.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.suffix == ".key":
            assert mode == 0o600, path
            assert path.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----\n")  # as FANNG's own keys
        else:
            assert mode == 0o644, path
            assert path.read_text().startswith("-----BEGIN CERTIFICATE-----\n")
            assert path.read_text().count("BEGIN CERTIFICATE") == 1


@need_openssl
@pytest.mark.parametrize("player", [1, 2, 3])
def test_openssl_verifies_each_player_certificate(certs, player):
    for purpose in ("sslserver", "sslclient"):  # each player is a TLS server to some and a client to others
        result = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", "RootCA.crt", f"Player{player}.crt", cwd=certs)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == f"Player{player}.crt: OK"
    subject = openssl("x509", "-in", f"Player{player}.crt", "-noout", "-subject", "-nameopt", "RFC2253", cwd=certs)
    assert subject.returncode == 0
    assert f"CN=P{player}" in subject.stdout.split("=", 1)[1].split(",")
    # the key matches the certificate: same public key
    from_cert = openssl("x509", "-in", f"Player{player}.crt", "-noout", "-pubkey", cwd=certs)
    from_key = openssl("pkey", "-in", f"Player{player}.key", "-pubout", cwd=certs)
    assert from_cert.returncode == 0 and from_key.returncode == 0
    assert from_cert.stdout == from_key.stdout


@need_openssl
def test_a_certificate_from_another_ca_does_not_verify(certs, tmp_path):
    other = tmp_path / "other"
    make_certificates(HOSTS, other)
    result = openssl("verify", "-CAfile", str(certs / "RootCA.crt"), str(other / "Player1.crt"))
    assert result.returncode != 0


def test_keys_match_and_names_with_cryptography(certs):
    root = x509.load_pem_x509_certificate((certs / "RootCA.crt").read_bytes())
    assert root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "RootCA"
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for player in (1, 2, 3):
        cert = x509.load_pem_x509_certificate((certs / f"Player{player}.crt").read_bytes())
        key = serialization.load_pem_private_key((certs / f"Player{player}.key").read_bytes(), password=None)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [f"P{player}"]
        assert cert.issuer == root.subject
        cert.verify_directly_issued_by(root)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    root_key = serialization.load_pem_private_key((certs / "RootCA.key").read_bytes(), password=None)
    assert root_key.public_key().public_numbers() == root.public_key().public_numbers()


def _context(certs: Path, player: int, server: bool) -> ssl.SSLContext:
    """What FANNG's Init_SSL_CTX sets up: its own certificate and key, peer certificates required and
    verified against the root CA, no host name check (FANNG compares the common name itself)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.load_cert_chain(certs / f"Player{player}.crt", certs / f"Player{player}.key")
    context.load_verify_locations(certs / "RootCA.crt")
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _common_name(peer: dict) -> str:
    return [value for rdn in peer["subject"] for key, value in rdn if key == "commonName"][0]


def test_mutual_tls_handshake_with_the_generated_certificates(certs):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen = {}

    def serve():
        connection, _ = listener.accept()
        with _context(certs, 1, True).wrap_socket(connection, server_side=True) as tls:
            seen["server saw"] = _common_name(tls.getpeercert())
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
            with _context(certs, 2, False).wrap_socket(raw) as tls:
                seen["client saw"] = _common_name(tls.getpeercert())
                assert tls.recv(2) == b"ok"
    finally:
        thread.join(20)
        listener.close()
    assert seen == {"server saw": "P2", "client saw": "P1"}


def test_published_test_certificate_fingerprints_equal_the_shipped_files():
    if not TEST_CERT_STORE.is_dir():
        pytest.skip(f"{TEST_CERT_STORE} is absent (tests that need ../shared skip without it)")
    computed = set()
    for name in ("RootCA.crt", "Player1.crt", "Player2.crt", "Player3.crt"):
        der = x509.load_pem_x509_certificate((TEST_CERT_STORE / name).read_bytes()).public_bytes(serialization.Encoding.DER)
        computed.add(hashlib.sha256(der).hexdigest())
        if OPENSSL:  # a second oracle: openssl's own fingerprint
            line = openssl("x509", "-in", str(TEST_CERT_STORE / name), "-noout", "-fingerprint", "-sha256").stdout
            assert line.strip().split("=", 1)[1].replace(":", "").lower() == hashlib.sha256(der).hexdigest()
        assert is_published_test_certificate(TEST_CERT_STORE / name)
    assert computed == set(FANNG_TEST_CERT_FINGERPRINTS)
    assert all(len(f) == 64 and f == f.lower() for f in FANNG_TEST_CERT_FINGERPRINTS)


def test_generated_certificates_are_not_the_published_ones(certs):
    for name in ("RootCA.crt", "Player1.crt", "Player2.crt", "Player3.crt"):
        assert not is_published_test_certificate(certs / name)


def test_is_published_test_certificate_refuses_what_is_not_a_certificate(tmp_path):
    bad = tmp_path / "x.crt"
    bad.write_text("hello\n")
    with pytest.raises(UserError):
        is_published_test_certificate(bad)
    with pytest.raises(UserError):
        is_published_test_certificate(tmp_path / "absent.crt")


def test_refuses_an_existing_output_directory(tmp_path):
    out = tmp_path / "store"
    out.mkdir()
    with pytest.raises(UserError) as info:
        make_certificates(HOSTS, out)
    assert "\n" not in str(info.value)
    assert list(out.iterdir()) == []


BAD_HOSTS = ["a b", "a/b", "host\n", "a\nb", "", " 10.0.0.1", "1.2.3.256", "01.2.3.4", "1.2.3", "1.2.3.4.5",
             "-host", "host-", "a..b", "x" * 64, "h_st", "../x", "host.", "10.0.0.1:80", "ä.example", "1.2.3.4\t"]


@pytest.mark.parametrize("bad", BAD_HOSTS)
def test_refuses_bad_hosts(tmp_path, bad):
    with pytest.raises(UserError) as info:
        make_certificates(["127.0.0.1", bad, "127.0.0.1"], tmp_path / "store")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "store").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("hosts", [[], ["127.0.0.1"] * 2, ["127.0.0.1"] * 4, "127.0.0.1"])
def test_refuses_other_than_three_hosts(tmp_path, hosts):
    with pytest.raises(UserError):
        make_certificates(hosts, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_accepts_ipv4_and_host_names():
    good = ["127.0.0.1", "255.255.255.255", "0.0.0.0", "localhost", "a-1.example.org", "x" * 63 + ".y", "p0"]
    assert validate_hosts(good[:3]) == good[:3]
    assert validate_hosts(good[3:6]) == good[3:6]
    assert validate_hosts(["p0", "p1", "p0"]) == ["p0", "p1", "p0"]


def test_nothing_left_behind_on_failure(tmp_path, monkeypatch):
    import mpc_export.deploy.certs as certs_module

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(certs_module, "write_new", boom)
    with pytest.raises(OSError):
        make_certificates(HOSTS, tmp_path / "store")
    assert list(tmp_path.iterdir()) == []


def test_key_files_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        make_certificates(HOSTS, tmp_path / "store")
    finally:
        os.umask(old)
    for key in (tmp_path / "store").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) & 0o077 == 0
