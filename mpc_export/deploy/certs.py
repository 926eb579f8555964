"""Certificates for a 3-party FANNG-MPC deployment: a fresh root CA and one certificate per player.

What FANNG-MPC does with them (src/System/Player.cpp, src/System/SystemData.cpp):

- ``Data/NetworkData.txt`` names the root CA's file, then for each player its host, its certificate's
  file name and its common name. Each player loads ``Cert-Store/<its certificate>`` and the private key
  from the same path with the last three characters ``crt`` replaced by ``key`` (Init_SSL_CTX), both PEM
  (SSL_CTX_use_certificate_file / SSL_CTX_use_PrivateKey_file, then SSL_CTX_check_private_key).
- Connections are TLS (TLS_method: OpenSSL's defaults for versions, ciphers, signature algorithms and
  security level) with SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT: each side requires the other's
  certificate and OpenSSL verifies its chain against ``Cert-Store/<root CA file>`` alone (the trust
  store; no system CAs). A player is a TLS server to lower-numbered players and a client to the others,
  so a player certificate must be valid for both purposes.
- After the handshake (ShowCerts) the peer certificate's subject commonName (the first CN entry, read
  with X509_NAME_get_text_by_NID into 256 bytes) must equal, byte for byte, the name NetworkData.txt
  gives that player; nothing else is compared: no subjectAltName, no host name or IP address.

So here: RSA keys (player 3072 bits, root 4096) and sha256WithRSAEncryption signatures, like FANNG's own
test certificates and accepted at any OpenSSL default security level; X.509 v3 with basicConstraints
(CA only for the root), keyUsage and extendedKeyUsage serverAuth + clientAuth for the players; the
player's host in subjectAltName for information only; subject CN "P1".."P3" (the root "RootCA").
Keys are unencrypted PEM (PKCS#1, as FANNG's ``Player1.key``): the runtime reads them without a
passphrase. Files: RootCA.crt, RootCA.key, Player1.crt/.key .. Player3.crt/.key; keys mode 0600 and the
directory 0700. RootCA.key stays with whoever makes the certificates: no bundle holds it.

FANNG's published test certificates (its Auto-Test-Data/Cert-Store, with their private keys in the same
public repository) authenticate nobody: :data:`FANNG_TEST_CERT_FINGERPRINTS` recognises them.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..run.hand_off import PARTIES

ROOT_NAME = "RootCA"
ROOT_CERT_FILE = "RootCA.crt"
ROOT_KEY_FILE = "RootCA.key"
PLAYER_KEY_BITS = 3072
ROOT_KEY_BITS = 4096


def player_cert_file(player: int) -> str:
    """Player p's (0-based) certificate file name: Player1.crt for player 0, as in FANNG's set-up."""
    return f"Player{player + 1}.crt"


def player_key_file(player: int) -> str:
    """The key FANNG loads for player p: its certificate's name with ``crt`` replaced by ``key``."""
    return f"Player{player + 1}.key"


def player_common_name(player: int) -> str:
    """The subject CN of player p's certificate, and its name in NetworkData.txt: P1, P2, P3."""
    return f"P{player + 1}"


# SHA-256 of the DER encoding of FANNG-MPC's published test certificates (Auto-Test-Data/Cert-Store):
# their private keys are public, so they authenticate nobody. Hard-coded: nothing is read at run time.
FANNG_TEST_CERT_FINGERPRINTS = frozenset({
    "d2a33e1e3f6cb83b8dfc8df7a815fb4ebd8c57cef8abe1f8692657d4a014aed3",  # RootCA.crt
    "3cb48aae819ca580962aaf81aa32da532182f38e40c3317f62e5dd950235232d",  # Player1.crt (CN P1)
    "7c2bb1c3086168ff9b4a511e6f6797e0075b0fde8aab5cc04db9db7ea1e02e0c",  # Player2.crt (CN P2)
    "bb45e533e7ca01b27236b78d16285e5996b4014ff1bf2de3f0a81b3aa5e70fd1",  # Player3.crt (CN P3)
})

# hosts end up in NetworkData.txt, read with `>>` (whitespace-separated) and resolved with getaddrinfo
# (AF_INET): dotted-quad IPv4 without leading zeros (getaddrinfo would read 010 as octal), or an RFC 1123
# host name (letters, digits, hyphens; labels of 1-63 characters not starting or ending with a hyphen).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"(?=[A-Za-z0-9.-]{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")
_ALL_NUMERIC = re.compile(r"[0-9.]+")


def validate_hosts(hosts) -> list[str]:
    """Exactly 3 hosts, each an IPv4 address or a host name (strict: no spaces, slashes, newlines or other
    characters NetworkData.txt could not hold); returns them as a list, raises UserError otherwise."""
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, (list, tuple)):
        raise UserError(f"hosts: a list of {PARTIES} host names or IPv4 addresses, one per player")
    if len(hosts) != PARTIES:
        raise UserError(f"{len(hosts)} host(s) given: need exactly {PARTIES}, one per player (player 0 first)")
    for index, host in enumerate(hosts):
        if not isinstance(host, str):
            raise UserError(f"host of player {index}: not a string")
        if IPV4.fullmatch(host):
            continue
        if _ALL_NUMERIC.fullmatch(host) or not HOST_NAME.fullmatch(host):
            raise UserError(f"host of player {index} {host[:80]!r}: not an IPv4 address (a.b.c.d) or a host name "
                            f"(letters, digits, '-' and '.')")
    return list(hosts)


@dataclass(frozen=True)
class CertificateFiles:
    """What make_certificates wrote (final paths)."""

    directory: Path
    root_certificate: Path
    root_key: Path
    certificates: tuple[Path, ...]  # player 0, 1, 2 (Player1.crt ..)
    keys: tuple[Path, ...]
    fingerprints: dict[str, str]  # file name -> SHA-256 of the DER certificate


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a new file with ``mode`` (whatever the umask): never over an existing file or through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _host_name_entry(host: str):
    from cryptography import x509

    if IPV4.fullmatch(host):
        return x509.IPAddress(ipaddress.IPv4Address(host))
    return x509.DNSName(host)


def make_certificates(hosts: list[str], out: Path, *, valid_days: int = 730) -> CertificateFiles:
    """Write a fresh root CA (RootCA.crt, RootCA.key) and Player1..3.crt / .key (CN P1..P3, signed by
    that CA) into ``out``, which must not exist; written in a temporary sibling renamed at the end."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hosts = validate_hosts(hosts)
    if not isinstance(valid_days, int) or isinstance(valid_days, bool) or not 1 <= valid_days <= 36500:
        raise UserError(f"valid_days {valid_days!r}: a whole number of days, 1 to 36500")
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise UserError(f"{out} already exists: give a new directory for the certificates (nothing is overwritten)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{parent}: no such directory")

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=valid_days)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=ROOT_KEY_BITS)
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpc-export deployment"),
                           x509.NameAttribute(NameOID.COMMON_NAME, ROOT_NAME)])
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA256()))

    players = []
    for player, host in enumerate(hosts):
        key = rsa.generate_private_key(public_exponent=65537, key_size=PLAYER_KEY_BITS)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpc-export deployment"),
                          x509.NameAttribute(NameOID.COMMON_NAME, player_common_name(player))])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(root_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([_host_name_entry(host)]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False)
                .sign(root_key, hashes.SHA256()))
        players.append((cert, key))

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))  # mode 0700
    try:
        write_new(staging / ROOT_CERT_FILE, root.public_bytes(serialization.Encoding.PEM), 0o644)
        write_new(staging / ROOT_KEY_FILE, key_pem(root_key), 0o600)
        for player, (cert, key) in enumerate(players):
            write_new(staging / player_cert_file(player), cert.public_bytes(serialization.Encoding.PEM), 0o644)
            write_new(staging / player_key_file(player), key_pem(key), 0o600)
        os.chmod(staging, 0o700)
        if out.exists() or out.is_symlink():
            raise UserError(f"{out} appeared while the certificates were made: nothing written there")
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fingerprints = {ROOT_CERT_FILE: hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).hexdigest()}
    for player, (cert, _) in enumerate(players):
        fingerprints[player_cert_file(player)] = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return CertificateFiles(out, out / ROOT_CERT_FILE, out / ROOT_KEY_FILE,
                            tuple(out / player_cert_file(p) for p in range(PARTIES)),
                            tuple(out / player_key_file(p) for p in range(PARTIES)), fingerprints)


def load_certificates(pem_path: Path) -> list:
    """Every certificate of a PEM file (cryptography objects); UserError if it holds none or is unreadable."""
    from cryptography import x509

    pem_path = Path(pem_path)
    try:
        data = pem_path.read_bytes()
    except OSError as exc:
        raise UserError(f"{pem_path}: cannot read ({exc.strerror or exc})") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UserError(f"{pem_path}: not a PEM certificate") from None


def fingerprint(certificate) -> str:
    """SHA-256 of a certificate's DER encoding, lower-case hex."""
    from cryptography.hazmat.primitives import serialization

    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def is_published_test_certificate(pem_path: Path) -> bool:
    """True if the PEM file holds one of FANNG-MPC's published test certificates (whose private keys are
    public); UserError if it is unreadable or holds no certificate."""
    return any(fingerprint(c) in FANNG_TEST_CERT_FINGERPRINTS for c in load_certificates(pem_path))
