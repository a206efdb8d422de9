"""Certificates for TLS made on the spot: a private certificate authority and the certificates it
signs, as PEM bytes.

Taught in notebook 10 (TLS with generated certificates).

A real deployment gets its certificates from an operator or a service (an
internal CA, Let's Encrypt, a service mesh); a lesson makes its own in a few
milliseconds so that every step can be seen::

    from rpclab.grpcstack import tls
    ca = tls.make_ca("RPC Lab CA")
    server = tls.make_server_cert(ca, hostnames=("localhost", "127.0.0.1"))
    grpc.ssl_server_credentials([(server.key_pem, server.cert_pem)])
    grpc.ssl_channel_credentials(root_certificates=ca.cert_pem)

Keys are ECDSA on the P-256 curve: small, quick to make, and accepted by
every TLS library gRPC uses.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rpclab import checks

__all__ = [
    "KeyPair",
    "CertInfo",
    "make_ca",
    "make_server_cert",
    "make_client_cert",
    "describe",
    "MAX_DAYS",
]

MAX_DAYS = 3650  # the longest validity these helpers will sign
CLOCK_SKEW = _dt.timedelta(
    minutes=5
)  # certificates start a little in the past, for clocks that disagree


@dataclass(frozen=True)
class KeyPair:
    """A private key and its certificate, both PEM-encoded (the bytes gRPC's credential functions
    take)."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        """The certificate, parsed."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def __repr__(self) -> str:  # never print a private key by accident
        cert = self.certificate
        return (
            f"<KeyPair for {cert.subject.rfc4514_string()!r}, issued by "
            f"{cert.issuer.rfc4514_string()!r}>"
        )


@dataclass(frozen=True)
class CertInfo:
    """What a certificate says, in words: who it names, who signed it, for which hosts, and for how
    long."""

    subject: str
    issuer: str
    hostnames: tuple[str, ...]  # DNS names and IP addresses of the subjectAltName extension
    is_ca: bool
    not_before: _dt.datetime
    not_after: _dt.datetime
    serial: int

    def __str__(self) -> str:
        lines = [
            f"subject:   {self.subject}",
            f"issuer:    {self.issuer}"
            + ("  (self-signed)" if self.issuer == self.subject else ""),
            f"is a CA:   {'yes' if self.is_ca else 'no'}",
            f"valid:     {self.not_before:%Y-%m-%d %H:%M} to {self.not_after:%Y-%m-%d %H:%M} UTC",
        ]
        if self.hostnames:
            lines.append(f"for hosts: {', '.join(self.hostnames)}")
        return "\n".join(lines)


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty str, not {name!r}")
    return name


def _check_days(days: object) -> int:
    return checks.integer("days", days, low=1, high=MAX_DAYS)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load(ca: KeyPair) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    if not isinstance(ca, KeyPair):
        raise TypeError(f"ca must be the KeyPair that make_ca returned, not {type(ca).__name__}")
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError(
            f"{cert.subject.rfc4514_string()!r} is not a certificate authority; sign with "
            "make_ca()'s KeyPair"
        )
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA's key is not an elliptic-curve key made by make_ca()")
    return key, cert


def _san(hostnames: Iterable[str]) -> x509.SubjectAlternativeName:
    if isinstance(hostnames, str):
        hostnames = (hostnames,)  # one name, not its letters
    names: list[x509.GeneralName] = []
    for name in hostnames:
        _check_name("each hostname", name)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    if not names:
        raise ValueError(
            "a server certificate needs at least one hostname or IP address, such as '127.0.0.1'"
        )
    return x509.SubjectAlternativeName(names)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = _dt.datetime.now(_dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + _dt.timedelta(days=days))
    )


def make_ca(common_name: str = "RPC Lab CA", *, days: int = 30) -> KeyPair:
    """A new certificate authority: a key and a self-signed certificate that may sign others."""
    _check_name("common_name", common_name)
    _check_days(days)
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(name, name, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def _leaf(
    ca: KeyPair,
    common_name: str,
    days: int,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
) -> KeyPair:
    _check_name("common_name", common_name)
    _check_days(days)
    ca_key, ca_cert = _load(ca)
    key = _new_key()
    builder = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
            ca_cert.subject,
            key.public_key(),
            days,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))


def make_server_cert(
    ca: KeyPair,
    hostnames: Iterable[str] = ("localhost", "127.0.0.1"),
    *,
    common_name: str | None = None,
    days: int = 30,
) -> KeyPair:
    """A server's key and certificate, signed by ``ca``, valid for ``hostnames`` (DNS names or IP
    addresses).

    A client checks that the address it dialled is among ``hostnames`` (the
    certificate's subjectAltName); the common name is only a label.
    """
    san = _san(hostnames)
    first = san[0].value
    return _leaf(ca, common_name or str(first), days, ExtendedKeyUsageOID.SERVER_AUTH, san)


def make_client_cert(ca: KeyPair, common_name: str, *, days: int = 30) -> KeyPair:
    """A client's key and certificate, signed by ``ca``, for mutual TLS (the server then knows who
    calls)."""
    return _leaf(ca, common_name, days, ExtendedKeyUsageOID.CLIENT_AUTH, None)


def describe(cert_pem: bytes | KeyPair) -> CertInfo:
    """What a PEM certificate (or a KeyPair's certificate) says: subject, issuer, hostnames,
    validity."""
    if isinstance(cert_pem, KeyPair):
        cert_pem = cert_pem.cert_pem
    if not isinstance(cert_pem, (bytes, bytearray)):
        raise TypeError(f"describe() takes PEM bytes or a KeyPair, not {type(cert_pem).__name__}")
    try:
        cert = x509.load_pem_x509_certificate(bytes(cert_pem))
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate: {exc}") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hostnames = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            str(ip) for ip in san.get_values_for_type(x509.IPAddress)
        )
    except x509.ExtensionNotFound:
        hostnames = ()
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        hostnames=hostnames,
        is_ca=is_ca,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        serial=cert.serial_number,
    )
