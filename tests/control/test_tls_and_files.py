"""TLS when configured, the console refused beyond loopback without it, and a damaged users file."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from otseam.control.users import UserError, UserStore
from tests.control.node import CONTRACT, PASSWORD, add_users
from tests.core.seamrun import SeamRun


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_with_a_secure_cookie(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    add_users(tmp_path)
    cert, key = self_signed(tmp_path)
    node = SeamRun(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        node.wait_for(lambda: "console on https://127.0.0.1:" in node.output, "the HTTPS console")
        port = int(node.output.split("console on https://127.0.0.1:")[1].split("/")[0])
        context = ssl.create_default_context(cafile=str(cert))
        request = urllib.request.Request(
            f"https://127.0.0.1:{port}/api/v1/login",
            data=json.dumps({"user": "ivan", "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )

        def answered() -> bool:
            try:
                with urllib.request.urlopen(request, context=context, timeout=5) as response:
                    cookie = response.headers["Set-Cookie"]
            except (OSError, urllib.error.HTTPError):
                return False
            assert "Secure" in cookie and "HttpOnly" in cookie
            return True

        node.wait_for(answered, "a sign-in over HTTPS")
    finally:
        node.stop()


def test_the_console_beyond_loopback_needs_tls(tmp_path: Path) -> None:
    (tmp_path / "seam.yaml").write_text(CONTRACT)
    (tmp_path / "token").write_text("a-metrics-token-of-some-length")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "otseam.cli",
            "run",
            str(tmp_path / "seam.yaml"),
            "--http",
            "0.0.0.0:0",
            "--token-file",
            str(tmp_path / "token"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs TLS (--tls-cert and --tls-key)" in result.stderr and "Traceback" not in result.stderr


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_a_damaged_users_file_is_one_clear_error(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    directory = tmp_path_factory.mktemp("users")
    store = UserStore(directory)
    store.directory.mkdir(parents=True)
    store.path.write_bytes(content)
    try:
        store.users()
    except UserError as exc:
        assert str(store.path) in str(exc) and "restore it from a backup" in str(exc)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=12,
    )
)
def test_a_users_file_of_the_wrong_shape_is_one_clear_error(
    tmp_path_factory: pytest.TempPathFactory, document: object
) -> None:
    directory = tmp_path_factory.mktemp("users")
    store = UserStore(directory)
    store.directory.mkdir(parents=True)
    store.path.write_text(json.dumps({"version": 1, "users": document, "tokens": {}}))
    try:
        store.users()
    except UserError as exc:
        assert "restore it from a backup" in str(exc)
