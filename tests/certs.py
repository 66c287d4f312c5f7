"""Certificates made in the test, with the `cryptography` package: a CA, server
and client certificates signed by it, written as PEM files."""
from __future__ import annotations

import datetime
import functools
import ipaddress
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class CA:
    def __init__(self, name: str = "explaind test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(_now() - datetime.timedelta(minutes=5))
                     .not_valid_after(_now() + datetime.timedelta(days=2))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, *, dns=(), uris=(), ips=(), client: bool = False,
              organization: str = "explaind tests") -> tuple[bytes, bytes]:
        """(certificate PEM, key PEM) of a leaf signed by this CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        sans = [x509.DNSName(d) for d in dns] + [x509.UniformResourceIdentifier(u) for u in uris] + \
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                                            x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(self.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(_now() - datetime.timedelta(minutes=5))
                   .not_valid_after(_now() + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    def server_files(self, folder, common_name: str = "explaind-server") -> tuple[str, str]:
        """A certificate for localhost / 127.0.0.1, written (atomically) as tls.crt and tls.key."""
        cert, key = self.issue(common_name, dns=["localhost"], ips=["127.0.0.1"])
        return write_pair(folder, cert, key)

    def write(self, path) -> str:
        return write_file(path, self.pem)


@functools.lru_cache(maxsize=None)
def default_roots_ca() -> tuple[CA, str]:
    """The CA (and its PEM file) of every test whose gRPC clients trust the daemon through
    GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, as the SDK's and the generated clients' secure channels
    do: gRPC reads that file once per process, so tests in one run must share it."""
    ca = CA()
    return ca, ca.write(os.path.join(tempfile.mkdtemp(prefix="explaind-test-roots-"), "ca.crt"))


def write_file(path, data: bytes) -> str:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return str(path)


def write_pair(folder, cert: bytes, key: bytes, name: str = "tls") -> tuple[str, str]:
    return write_file(os.path.join(folder, f"{name}.crt"), cert), write_file(os.path.join(folder, f"{name}.key"), key)


def common_name(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
