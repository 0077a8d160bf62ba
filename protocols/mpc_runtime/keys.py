"""Party identities: a key and a self-signed certificate per party, and the TLS 1.3
contexts with which every pair of processes authenticates the other.

A party's key directory holds its own ``partyR.key`` and ``partyR.crt`` and the
certificates ``partyS.crt`` of every peer it will accept (the dealer included, rank
``world_size``). A certificate's file name is the rank it speaks for: a peer is accepted
only with the certificate listed under its rank, so a party cannot pose as another, nor
a stranger as any. Keys are ECDSA P-256; the channel is TLS 1.3 (Python's ``ssl``), both
sides presenting certificates, no cipher of our own.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["KeyringError", "Keyring", "cert_path", "key_path", "make_keys"]


class KeyringError(RuntimeError):
    """A key directory lacks a file a party needs, or a file is not a key or certificate."""


def key_path(directory: str | Path, rank: int) -> Path:
    """Where party ``rank``'s private key lives in ``directory``."""
    return Path(directory) / f"party{rank}.key"


def cert_path(directory: str | Path, rank: int) -> Path:
    """Where party ``rank``'s certificate lives in ``directory``."""
    return Path(directory) / f"party{rank}.crt"


def make_keys(directory: str | Path, rank: int, days: int = 3650) -> tuple[Path, Path]:
    """Create party ``rank``'s key (mode 0600) and self-signed certificate in ``directory``.

    Returns:
        The key's and the certificate's paths.

    Raises:
        FileExistsError: a key for ``rank`` is already there (never overwritten).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_file, cert_file = key_path(directory, rank), cert_path(directory, rank)
    if key_file.exists():
        raise FileExistsError(f"{key_file} exists; remove it first to make a new key for party {rank}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"secvit party {rank}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class Keyring:
    """One process's identity and the certificates of the peers it accepts.

    Attributes:
        rank: This process's rank.
        key_file, cert_file: Its own key and certificate.
        peers: Each accepted peer's rank -> its certificate (PEM text).
    """

    rank: int
    key_file: Path
    cert_file: Path
    peers: dict[int, str]

    @classmethod
    def load(cls, directory: str | Path, rank: int, peers: list[int]) -> "Keyring":
        """Party ``rank``'s keyring from ``directory`` (see the module docstring).

        Raises:
            KeyringError: a file is missing or unreadable, naming it.
        """
        directory = Path(directory)
        needed = [key_path(directory, rank), cert_path(directory, rank)] + [cert_path(directory, p) for p in peers]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise KeyringError(f"key directory {directory}: missing {', '.join(missing)} "
                            f"(make keys with `secvit keys --out DIR --rank R` and copy each peer's partyR.crt)")
        texts = {p: cert_path(directory, p).read_text() for p in peers}
        for p, text in texts.items():
            try:
                x509.load_pem_x509_certificate(text.encode())
            except ValueError:
                raise KeyringError(f"{cert_path(directory, p)} is not a PEM certificate") from None
        return cls(rank, key_path(directory, rank), cert_path(directory, rank), texts)

    def context(self, server: bool) -> ssl.SSLContext:
        """A TLS 1.3 context that presents this party's certificate and requires one of
        the peers' (no host names: a certificate is the identity)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as e:
            raise KeyringError(f"{self.key_file} / {self.cert_file}: not a matching key and certificate "
                               f"({e.reason})") from None
        ctx.load_verify_locations(cadata="".join(self.peers.values()))
        return ctx

    def rank_of(self, der: bytes | None) -> int | None:
        """The rank whose listed certificate is ``der`` (None: no listed peer's)."""
        if der is None:
            return None
        mine = _fingerprint(der)
        for rank, text in self.peers.items():
            if _fingerprint(ssl.PEM_cert_to_DER_cert(text)) == mine:
                return rank
        return None
