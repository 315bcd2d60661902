"""A certificate/key pair is proven in memory: encrypted, mismatched, not-yet-valid and expired pairs are refused
with the file named (through the real CLI, stdin closed, so a prompt would hang into the timeout), oversized files
are refused by size, and loading leaves no memory file open (issue 7, items 1 and 6)."""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook.tls import CertReloader, TLSError

ROOT = Path(__file__).resolve().parents[2]


def _pair(*, start: datetime.timedelta, end: datetime.timedelta, password: bytes | None = None) -> tuple[bytes, bytes]:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pair-test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + start)
        .not_valid_after(now + end)
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


HOUR = datetime.timedelta(hours=1)


def _write(tmp_path: Path, cert: bytes, key: bytes) -> tuple[Path, Path]:
    c, k = tmp_path / "tls.crt", tmp_path / "tls.key"
    c.write_bytes(cert)
    k.write_bytes(key)
    return c, k


@pytest.mark.parametrize(
    ("kind", "flag", "message"),
    [
        ("encrypted", "--key-file", "encrypted"),
        ("mismatched", "--key-file", "does not match the certificate"),
        ("not-yet-valid", "--cert-file", "not valid yet"),
        ("expired", "--cert-file", "expired at"),
        ("not-pem", "--cert-file", "not a PEM certificate"),
    ],
)
def test_a_bad_pair_exits_2_naming_the_file_and_never_prompts(
    tmp_path: Path, kind: str, flag: str, message: str
) -> None:
    cert, key = _pair(start=-HOUR, end=HOUR, password=b"secret" if kind == "encrypted" else None)
    if kind == "mismatched":
        key = _pair(start=-HOUR, end=HOUR)[1]
    elif kind == "not-yet-valid":
        cert, key = _pair(start=HOUR, end=2 * HOUR)
    elif kind == "expired":
        cert, key = _pair(start=-2 * HOUR, end=-HOUR)
    elif kind == "not-pem":
        cert = b"hello\n"
    c, k = _write(tmp_path, cert, key)
    env = {k2: v for k2, v in os.environ.items() if not k2.startswith("L2GUARD_")}
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "--cert-file", str(c), "--key-file", str(k), "--cluster-state", "/dev/null"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert str(c if flag == "--cert-file" else k) in lines[0], lines[0]


def test_an_oversized_file_is_refused_by_size_without_reading_it(tmp_path: Path) -> None:
    cert, key = _pair(start=-HOUR, end=HOUR)
    c, k = _write(tmp_path, cert, key)
    reloader = CertReloader(str(c), str(k))
    with open(c, "wb") as fh:  # 200 MB, sparse: the size alone must refuse it
        fh.truncate(200 * 1024 * 1024)
    assert reloader.check() is False and reloader.loaded
    with pytest.raises(TLSError, match="larger than the limit of 1048576 bytes"):
        CertReloader(str(c), str(k))


def test_loading_keeps_no_memory_file_or_scratch_file_open(tmp_path: Path) -> None:
    cert, key = _pair(start=-HOUR, end=HOUR)
    c, k = _write(tmp_path, cert, key)
    CertReloader(str(c), str(k))
    links = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor listdir itself used
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
    assert not [link for link in links if "memfd:" in link or "l2guard-tls" in link], links


def test_a_certificate_that_expires_while_served_fails_readiness_with_a_reason(tmp_path: Path) -> None:
    cert, key = _pair(start=-HOUR, end=HOUR)
    c, k = _write(tmp_path, cert, key)
    now = [datetime.datetime.now(datetime.UTC)]
    reloader = CertReloader(str(c), str(k), clock=lambda: now[0])
    assert reloader.problem() is None
    now[0] += 2 * HOUR
    problem = reloader.problem()
    assert problem is not None and "expired at" in problem
