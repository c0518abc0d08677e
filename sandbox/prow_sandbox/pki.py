"""Per-cluster PKI for the sandbox apiservers, made with ``cryptography`` (no openssl CLI).

Each cluster gets its own CAs so that a kubeconfig of one cluster never verifies against
another, and so that tests can prove TLS verification is real (a wrong CA must fail).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any sandbox lifetime; the clusters are disposable.
VALIDITY = datetime.timedelta(days=365)
# DNS names and IPs the apiserver answers as: loopback plus the in-cluster service names
# (10.0.0.1 is the first address of --service-cluster-ip-range=10.0.0.0/24).
SERVING_DNS = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
               "kubernetes.default.svc.cluster.local")
SERVING_IPS = ("127.0.0.1", "10.0.0.1")


@dataclass(frozen=True)
class KeyPair:
    """A certificate (or public key) and its private key, PEM encoded."""

    cert_pem: bytes
    key_pem: bytes


def _ec_key() -> ec.EllipticCurvePrivateKey:
    # P-256 keys are generated in microseconds (RSA-2048 takes ~100 ms each) and every
    # client involved (Go, urllib3/OpenSSL, kubectl) supports them.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # Backdated a little so a client whose clock is slightly behind still accepts it.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def make_ca(common_name: str) -> KeyPair:
    """A self-signed CA certificate."""
    key = _ec_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _issue(ca: KeyPair, subject: x509.Name, *, server: bool,
           dns_names: tuple[str, ...] = SERVING_DNS, ips: tuple[str, ...] = SERVING_IPS) -> KeyPair:
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = _ec_key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),
            critical=False,
        )
    )
    if server:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_serving_cert(ca: KeyPair) -> KeyPair:
    """The apiserver's serving certificate for 127.0.0.1 / localhost, signed by ``ca``."""
    return _issue(ca, _name("kube-apiserver"), server=True)


def make_host_cert(ca: KeyPair, host: str) -> KeyPair:
    """A serving certificate for one DNS name (the sandbox's stand-in for a Google host)."""
    return _issue(ca, _name(host), server=True, dns_names=(host,), ips=())


def make_client_cert(ca: KeyPair, user: str, group: str | None = None) -> KeyPair:
    """A client certificate; the apiserver maps CN to the user and O to a group."""
    return _issue(ca, _name(user, group), server=False)


def make_service_account_keys() -> KeyPair:
    """RSA key pair for signing service-account tokens (RS256, as GKE issues them).

    ``cert_pem`` holds the public key (what ``--service-account-key-file`` verifies with).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(public, _key_pem(key))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (private keys, credentials)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
