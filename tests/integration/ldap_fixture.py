"""A real OpenLDAP ``slapd`` for tests: a temp, unprivileged instance on free loopback ports.

The fixture writes a ``slapd.conf`` (mdb backend, suffix ``dc=hubbub,dc=test``),
makes a throw-away CA and a server certificate for 127.0.0.1 with ``openssl``,
loads ``ou=people`` with two users (``lena``, ``omar``) with ``slapadd``, starts
``slapd -d 0`` listening on ``ldap://`` (StartTLS available) and ``ldaps://``,
waits until ``ldapsearch`` gets an answer, and stops it at teardown.

It never touches the system instance (``/etc/ldap/slapd.d``, port 389, ldapi):
everything lives in a temp directory. If slapd, ldap-utils or openssl are not
installed the fixture FAILS with a message saying what to install.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SUFFIX = "dc=hubbub,dc=test"
PEOPLE = f"ou=people,{SUFFIX}"
USER_DN_TEMPLATE = f"uid={{username}},{PEOPLE}"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "slapd-root-secret"
INSTALL_HINT = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils openssl"
)


@dataclass(frozen=True, slots=True)
class DirectoryPerson:
    """One directory entry under ``ou=people``."""

    uid: str
    password: str
    cn: str
    display_name: str = ""


LENA = DirectoryPerson("lena", "lena directory pass", "Lena Lindqvist", "Lena L.")
OMAR = DirectoryPerson("omar", "omar directory pass", "Omar Haddad")
PEOPLE_ENTRIES = (LENA, OMAR)


@dataclass(frozen=True, slots=True)
class Slapd:
    """A running slapd: URLs, the DN template for Hubbub, the CA that signed its certificate."""

    url: str
    ldaps_url: str
    user_dn: str
    ca_file: str
    pid: int


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ssha(password: str) -> str:
    """``{SSHA}`` userPassword value: base64(SHA-1(password + salt) + salt) (OpenLDAP format)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _require_tools() -> None:
    missing = [p for p in (SLAPD, SLAPADD) if not os.access(p, os.X_OK)]
    missing += [t for t in ("ldapsearch", "openssl") if shutil.which(t) is None]
    if not (SCHEMA_DIR / "inetorgperson.schema").is_file():
        missing.append(str(SCHEMA_DIR / "inetorgperson.schema"))
    if missing:
        pytest.fail(
            f"LDAP tests need a real OpenLDAP; missing: {', '.join(missing)}. "
            f"Install it with: {INSTALL_HINT}",
            pytrace=False,
        )


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"{cmd[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}", pytrace=False
        )


def _make_certificates(d: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost signed by it."""
    ca_key, ca_cert = d / "ca.key", d / "ca.pem"
    key, csr, cert = d / "server.key", d / "server.csr", d / "server.pem"
    _run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=Hubbub test CA", "-keyout", str(ca_key), "-out", str(ca_cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        d,
    )  # fmt: skip
    _run(
        [
            "openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr),
        ],
        d,
    )  # fmt: skip
    ext = d / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _run(
        [
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert),
            "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
            "-extfile", str(ext), "-out", str(cert),
        ],
        d,
    )  # fmt: skip
    return ca_cert, cert, key


def _write_config(d: Path, ca: Path, cert: Path, key: Path) -> Path:
    (d / "db").mkdir()
    conf = d / "slapd.conf"
    conf.write_text(
        f"""\
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
modulepath {MODULE_DIR}
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}

database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {d}/db
# Anyone may bind with a password; a bound user may read its own entry; nothing else.
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by self read
    by * none
"""
    )
    return conf


def _write_data(d: Path) -> Path:
    entries = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: hubbub\no: Hubbub\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
    ]
    for p in PEOPLE_ENTRIES:
        entry = (
            f"dn: uid={p.uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {p.uid}\n"
            f"cn: {p.cn}\nsn: {p.cn.split()[-1]}\nuserPassword: {ssha(p.password)}\n"
        )
        if p.display_name:
            entry += f"displayName: {p.display_name}\n"
        entries.append(entry)
    ldif = d / "data.ldif"
    ldif.write_text("\n".join(entries))
    return ldif


def _answers(url: str) -> bool:
    search = ["ldapsearch", "-x", "-LLL", "-H", url, "-D", ROOT_DN, "-w", ROOT_PW]
    done = subprocess.run(
        [*search, "-b", PEOPLE, "-s", "one", "uid"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0 and all(f"uid: {p.uid}" in done.stdout for p in PEOPLE_ENTRIES)


def _start(d: Path, conf: Path, attempts: int = 3) -> tuple[subprocess.Popen[bytes], str, str]:
    """Start slapd on two free ports (retrying if a port was taken meanwhile)."""
    log_path = d / "slapd.log"
    for _ in range(attempts):
        url = f"ldap://127.0.0.1:{free_port()}/"
        ldaps_url = f"ldaps://127.0.0.1:{free_port()}/"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [SLAPD, "-h", f"{url} {ldaps_url}", "-f", str(conf), "-d", "0"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(url):
                return proc, url, ldaps_url
            time.sleep(0.1)
        _stop(proc)
    pytest.fail(
        f"slapd did not start after {attempts} attempts:\n{log_path.read_text(errors='replace')}",
        pytrace=False,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A running OpenLDAP slapd with ``uid=lena`` and ``uid=omar`` under ``ou=people``.

    Fails (never skips) when slapd/ldap-utils/openssl are missing.
    """
    _require_tools()
    d = tmp_path_factory.mktemp("slapd")
    ca, cert, key = _make_certificates(d)
    conf = _write_config(d, ca, cert, key)
    _run([SLAPADD, "-q", "-f", str(conf), "-l", str(_write_data(d))], d)
    proc, url, ldaps_url = _start(d, conf)
    try:
        yield Slapd(url, ldaps_url, USER_DN_TEMPLATE, str(ca), proc.pid)
    finally:
        _stop(proc)
