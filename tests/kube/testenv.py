"""A local Kubernetes control plane for tests, started as plain processes, like envtest.

The binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, and the
Kubeflow training operator and MPI operator) are built from Go modules by
``tools/k8s-testenv/build.sh`` into ``.cache/k8s-testenv/<versions>/bin/``; see
``tools/k8s-testenv/README.md``. This module finds (or builds) them, makes the certificates and a
``system:masters`` kubeconfig, starts the processes on random 127.0.0.1 ports, installs the
Kubeflow CRDs that build.sh took from the pinned upstream modules (``<versions>/crds/kubeflow``)
and waits until they are Established, registers fake kwok Nodes, and tears everything down
again (process groups, then the temporary directory). :class:`KubeflowOperators` runs the two
operators against a started control plane.

Only loopback addresses are listened on or connected to. ``--service-cluster-ip-range`` and kwok's
pod CIDR are bookkeeping inside the API server: no process routes to them. Fake nodes report
127.0.0.1 as their address, so whatever the API server would proxy to a "kubelet" stays local.

The flags follow controller-runtime's ``pkg/internal/testing/controlplane``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

from tests.kube.helpers import apply, delete, get

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tools" / "k8s-testenv"
BUILD_SCRIPT = TOOLS_DIR / "build.sh"
VERSIONS_FILE = TOOLS_DIR / "versions.env"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
OPERATORS = ("training-operator", "mpi-operator")
KUEUE = "kueue"
KWOK_STAGES_FILE = "kwok-stages.yaml"  # written by build.sh beside bin/
# Runplane's own Stages: pods play simulation.runplane.io/outcome (see the file).
KWOK_OUTCOMES = Path(__file__).with_name("kwok-outcomes.yaml")
CRDS = "crds"  # build.sh's name for the upstream CRDs, which it writes into crds/ beside bin/

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KWOK_POD_CIDR = "10.244.0.0/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
ADMIN_USER = "runplane-test-admin"
TESTENV_FIELD_MANAGER = "runplane-testenv"


class BinariesUnavailable(RuntimeError):
    """The control plane binaries are not there and could not be built; the text says why."""


class StartupError(RuntimeError):
    """A component did not come up; the text has the tail of its log."""


# --------------------------------------------------------------------------------------------
# Binaries


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def cache_root() -> Path:
    return Path(os.environ.get("K8S_TESTENV_CACHE") or REPO_ROOT / ".cache" / "k8s-testenv")


def default_bin_dir() -> Path:
    v = read_versions()
    name = f"kubernetes-{v['KUBERNETES_VERSION']}_etcd-{v['ETCD_VERSION']}_kwok-{v['KWOK_VERSION']}"
    return cache_root() / name / "bin"


def _missing(bin_dir: Path, names: Iterable[str]) -> list[str]:
    return [
        n
        for n in names
        if not (
            (bin_dir.parent / CRDS / ".stamp").is_file()
            if n == CRDS
            else os.access(bin_dir / n, os.X_OK)
        )
    ]


def crd_dir(bin_dir: Path, project: str = "kubeflow") -> Path:
    """The CRDs build.sh took from the pinned modules: ``kubeflow`` (PyTorchJob, TFJob, MPIJob
    v2beta1) or ``kueue``."""
    return bin_dir.parent / CRDS / project


def find_binaries(
    names: Iterable[str] = BINARIES, *, build: bool = True, log: Path | None = None
) -> Path:
    """The directory holding ``names``, building them with build.sh when needed and allowed.

    ``RUNPLANE_KUBE_BIN_DIR`` points at prebuilt binaries (nothing is built then).
    Raises BinariesUnavailable with the exact reason when they can't be had.
    """
    names = list(names)
    override = os.environ.get("RUNPLANE_KUBE_BIN_DIR")
    if override:
        bin_dir = Path(override)
        missing = _missing(bin_dir, names)
        if missing:
            raise BinariesUnavailable(
                f"RUNPLANE_KUBE_BIN_DIR={override} lacks executable {', '.join(missing)}"
            )
        return bin_dir

    bin_dir = default_bin_dir()
    if not build:
        missing = _missing(bin_dir, names)
        if missing:
            raise BinariesUnavailable(
                f"{', '.join(missing)} not built in {bin_dir} and building is off "
                f"(RUNPLANE_KUBE_BUILD=0); run {BUILD_SCRIPT.relative_to(REPO_ROOT)}"
            )
        return bin_dir
    if shutil.which("go") is None:
        missing = _missing(bin_dir, names)
        if missing:
            raise BinariesUnavailable(
                f"{', '.join(missing)} not built in {bin_dir} and `go` is not on PATH to build "
                f"them with {BUILD_SCRIPT.relative_to(REPO_ROOT)}"
            )
        return bin_dir
    env = dict(os.environ, K8S_TESTENV_ONLY=" ".join(names))
    out: IO[str] | int = subprocess.DEVNULL
    with contextlib.ExitStack() as stack:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("a"))
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            env=env,
            check=False,
        )
    if proc.returncode != 0:
        where = f"; its log: {log}" if log is not None else ""
        tail = _tail(log) if log is not None else ""
        raise BinariesUnavailable(
            f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} failed with exit code {proc.returncode}"
            f"{where}\n{tail}"
        )
    built = Path(proc.stdout.strip().splitlines()[-1])
    missing = _missing(built, names)
    if missing:
        raise BinariesUnavailable(f"build.sh succeeded but {built} lacks {', '.join(missing)}")
    return built


# --------------------------------------------------------------------------------------------
# Certificates (Python `cryptography`)


@dataclass(frozen=True)
class _Pair:
    cert_pem: bytes
    key_pem: bytes


def _make_certs(cert_dir: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=7)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def key_pem(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def name(cn: str, org: str | None = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    ca_key = key()
    ca_name = name("runplane-test-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        subject: x509.Name, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]
    ) -> _Pair:
        k = key()
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
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
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return _Pair(cert.public_bytes(serialization.Encoding.PEM), key_pem(k))

    first_service_ip = next(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE).hosts())
    serving = leaf(
        name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(first_service_ip),
        ],
    )
    admin = leaf(name(ADMIN_USER, "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, [])
    sa_key = key()

    cert_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
        "ca.key": key_pem(ca_key),
        "apiserver.crt": serving.cert_pem,
        "apiserver.key": serving.key_pem,
        "admin.crt": admin.cert_pem,
        "admin.key": admin.key_pem,
        "sa.key": key_pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    paths: dict[str, Path] = {}
    for fname, data in files.items():
        p = cert_dir / fname
        p.write_bytes(data)
        p.chmod(0o600)
        paths[fname] = p
    return paths


def _kubeconfig(server: str, ca: bytes, cert: bytes, key: bytes, user: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "runplane-test",
                "cluster": {"server": server, "certificate-authority-data": b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
            }
        ],
        "contexts": [
            {"name": "runplane-test", "context": {"cluster": "runplane-test", "user": user}}
        ],
        "current-context": "runplane-test",
        "preferences": {},
    }
    return json.dumps(doc, indent=2)  # JSON is YAML


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _set_pdeathsig() -> None:
    """In the child: be killed if the Python process dies without tearing down (Linux).

    SIGKILL, not SIGTERM: etcd and kube-apiserver both told to stop at once can wait on each
    other's connections for a long time, and the state is throwaway anyway.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PDEATHSIG


@dataclass
class Component:
    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None  # added to this process's environment
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"$ {' '.join(self.args)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.args,
                env={**os.environ, **self.env} if self.env else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() gets all of it
                preexec_fn=_set_pdeathsig,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise StartupError(
                f"{self.name} exited with code {self.process.returncode}; "
                f"log {self.log}:\n{_tail(self.log)}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)
        else:
            # The leader is gone; make sure nothing it forked lingers in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.process = None


def _stop_all(components: list[Component]) -> None:
    """Stop the components, the last started first."""
    for c in reversed(components):
        c.stop()
    components.clear()


@contextlib.contextmanager
def _stop_on_error(stop: Callable[[], None]) -> Iterator[None]:
    """Run ``stop`` if the block fails (a half-started set of processes must not linger)."""
    try:
        yield
    except BaseException:
        stop()
        raise


def _wait(what: str, ready: Callable[[], bool], timeout: float, *components: Component) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        for c in components:
            c.check()
        if ready():
            return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.name} ({c.log}):\n{_tail(c.log)}" for c in components)
            raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


WORKDIR_PREFIX = "runplane-kube-"


def _remove_stale_workdirs() -> None:
    """Remove temp dirs left by test processes that were killed before they could tear down."""
    for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = d.name[len(WORKDIR_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


# --------------------------------------------------------------------------------------------
# The control plane


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ kube-controller-manager, kube-scheduler, kwok) on 127.0.0.1.

    Use ``start()``/``stop()`` or ``with ControlPlane(...) as cp:``. After start: ``kubeconfig``
    (a system:masters client certificate), ``server`` (https://127.0.0.1:PORT), ``api_client()``.
    """

    bin_dir: Path
    crd_dir: Path | None = None
    controller_manager: bool = True
    scheduler: bool = True
    kwok: bool = True
    kwok_nodes: int = 1
    log_dir: Path | None = None  # keep the logs here (default: inside the temp dir, removed)
    startup_timeout: float = 120.0

    workdir: Path = field(init=False)
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    etcd_url: str = field(init=False)
    startup_seconds: float = field(init=False, default=0.0)
    components: list[Component] = field(init=False, default_factory=list)
    _certs: dict[str, Path] = field(init=False, default_factory=dict)

    # ---- lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        _remove_stale_workdirs()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
        logs = self.log_dir or self.workdir / "logs"
        with _stop_on_error(self.stop):
            self._certs = _make_certs(self.workdir / "certs")
            self._start_etcd(logs)
            self._start_apiserver(logs)
            if self.crd_dir is not None:
                install_crds(self.api_client(), sorted(self.crd_dir.glob("*.yaml")))
            if self.controller_manager:
                self._start_controller_manager(logs)
            if self.scheduler:
                self._start_scheduler(logs)
            if self.kwok:
                self._start_kwok(logs)
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        _stop_all(self.components)
        if getattr(self, "workdir", None) is not None and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- clients

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for the admin user (close it when done)."""
        from kubernetes import client, config

        from app.cluster.kubernetes import sized

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=sized(client.Configuration())
        )

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver (every watch and request to it is cut), wait, start it again on
        the same port and wait until it is ready: an API server upgrade, as a client sees it."""
        (apiserver,) = [c for c in self.components if c.name == "kube-apiserver"]
        apiserver.stop()
        time.sleep(down_seconds)
        apiserver.start()
        _wait(
            "kube-apiserver /readyz after a restart",
            lambda: _http_ok(f"{self.server}/readyz", self._ssl_context()),
            self.startup_timeout,
            apiserver,
        )

    def compact_etcd(self, revision: int) -> None:
        """Compact etcd's history up to ``revision`` (a resourceVersion): what the API server
        does every few minutes; a watch from an older version then answers 410 Gone."""
        request = urllib.request.Request(
            f"{self.etcd_url}/v3/kv/compaction",
            data=json.dumps({"revision": str(revision), "physical": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            response.read()

    def cert_file(self, name: str) -> Path:
        """A file made at start: ``ca.crt``, ``apiserver.crt``/``.key`` (127.0.0.1, localhost)..."""
        return self._certs[name]

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self._certs["ca.crt"]))
        ctx.load_cert_chain(str(self._certs["admin.crt"]), str(self._certs["admin.key"]))
        return ctx

    # ---- components

    def _spawn(self, name: str, args: list[str], logs: Path) -> Component:
        c = Component(name, args, logs / f"{name}.log")
        self.components.append(c)
        c.start()
        return c

    def _retry_ports(
        self, start: Callable[[], Component], ready: Callable[[], bool], what: str
    ) -> None:
        """Start a component on freshly picked ports; try again if a port was taken meanwhile."""
        for attempt in range(3):
            comp = start()
            try:
                _wait(what, ready, self.startup_timeout, comp)
                return
            except StartupError as err:
                comp.stop()
                self.components.remove(comp)
                if attempt == 2 or "address already in use" not in str(err):
                    raise

    def _start_etcd(self, logs: Path) -> None:
        data_dir = self.workdir / "etcd"

        def start() -> Component:
            client, peer = free_port(), free_port()
            self.etcd_url = f"http://127.0.0.1:{client}"
            shutil.rmtree(data_dir, ignore_errors=True)
            return self._spawn(
                "etcd",
                [
                    str(self.bin_dir / "etcd"),
                    f"--data-dir={data_dir}",
                    "--name=runplane-test",
                    f"--listen-client-urls={self.etcd_url}",
                    f"--advertise-client-urls={self.etcd_url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-cluster=runplane-test=http://127.0.0.1:{peer}",
                    "--unsafe-no-fsync=true",
                    "--log-level=warn",
                ],
                logs,
            )

        self._retry_ports(start, lambda: _http_ok(f"{self.etcd_url}/health"), "etcd /health")

    def _start_apiserver(self, logs: Path) -> None:
        c = self._certs
        cert_dir = self.workdir / "apiserver"
        cert_dir.mkdir(exist_ok=True)

        def start() -> Component:
            port = free_port()
            self.server = f"https://127.0.0.1:{port}"
            self.kubeconfig = self.workdir / "kubeconfig"
            self.kubeconfig.write_text(
                _kubeconfig(
                    self.server,
                    c["ca.crt"].read_bytes(),
                    c["admin.crt"].read_bytes(),
                    c["admin.key"].read_bytes(),
                    ADMIN_USER,
                )
            )
            self.kubeconfig.chmod(0o600)
            return self._spawn(
                "kube-apiserver",
                [
                    str(self.bin_dir / "kube-apiserver"),
                    f"--etcd-servers={self.etcd_url}",
                    f"--cert-dir={cert_dir}",
                    f"--tls-cert-file={c['apiserver.crt']}",
                    f"--tls-private-key-file={c['apiserver.key']}",
                    f"--client-ca-file={c['ca.crt']}",
                    f"--service-account-key-file={c['sa.pub']}",
                    f"--service-account-signing-key-file={c['sa.key']}",
                    f"--service-account-issuer={self.server}/",
                    "--authorization-mode=RBAC",
                    f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                    f"--secure-port={port}",
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    # A loopback advertise address is refused as the "kubernetes" Service's
                    # endpoint, so that Service gets none (nothing in the tests needs it).
                    "--endpoint-reconciler-type=none",
                    "--disable-admission-plugins=ServiceAccount",
                    "--allow-privileged=true",
                    "--profiling=false",
                    "--v=1",
                ],
                logs,
            )

        self._retry_ports(
            start,
            lambda: _http_ok(f"{self.server}/readyz", self._ssl_context()),
            "kube-apiserver /readyz",
        )

    def _start_controller_manager(self, logs: Path) -> None:
        c = self._certs
        comp = self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",  # no HTTPS endpoint
                f"--service-account-private-key-file={c['sa.key']}",
                f"--root-ca-file={c['ca.crt']}",
                "--use-service-account-credentials=false",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--controllers=*",
                "--profiling=false",
                "--v=1",
            ],
            logs,
        )
        # The serviceaccount controller making "default" in "default" shows the controllers run.
        with self.api_client() as api:
            from kubernetes import client

            core = client.CoreV1Api(api)

            def ready() -> bool:
                try:
                    core.read_namespaced_service_account("default", "default")
                    return True
                except client.ApiException:
                    return False

            _wait(
                "kube-controller-manager (default ServiceAccount)",
                ready,
                self.startup_timeout,
                comp,
            )

    def _start_scheduler(self, logs: Path) -> None:
        comp = self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--profiling=false",
                "--v=1",
            ],
            logs,
        )
        time.sleep(0.2)
        comp.check()

    def _start_kwok(self, logs: Path) -> None:
        stages = self.bin_dir.parent / KWOK_STAGES_FILE
        if not stages.exists():
            raise StartupError(f"kwok stages {stages} missing: run tools/k8s-testenv/build.sh")
        comp = self._spawn(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--config={stages}",
                f"--config={KWOK_OUTCOMES}",
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--cidr={KWOK_POD_CIDR}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
            ],
            logs,
        )
        names = [f"kwok-node-{i}" for i in range(self.kwok_nodes)]
        with self.api_client() as api:
            for n in names:
                apply(api, fake_node(n), field_manager=TESTENV_FIELD_MANAGER, force=True)

            def ready() -> bool:
                for n in names:
                    node = get(api, "v1", "Node", n) or {}
                    if _conditions(node).get("Ready") != "True":
                        return False
                return True

            _wait("kwok fake nodes Ready", ready, self.startup_timeout, comp)


def fake_node(
    name: str, *, cpu: str = "32", memory: str = "256Gi", gpus: int = 8
) -> dict[str, Any]:
    """A Node that kwok manages (annotation ``kwok.x-k8s.io/node: fake``), without taints."""
    resources = {"cpu": cpu, "memory": memory, "pods": "110", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


# --------------------------------------------------------------------------------------------
# CRDs


def _conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions") or []}


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster on big CRDs
    with path.open() as f:
        return [d for d in yaml.load_all(f, Loader=loader) if d]


def install_crds(api_client: Any, files: Iterable[Path], timeout: float = 60.0) -> list[str]:
    """Apply the CRDs in ``files`` (server-side, forced) and wait until each is Established."""
    names: list[str] = []
    for path in files:
        for doc in load_yaml_documents(path):
            if doc.get("kind") == "CustomResourceDefinition":
                apply(api_client, doc, field_manager=TESTENV_FIELD_MANAGER, force=True)
                names.append(doc["metadata"]["name"])

    def established() -> bool:
        for name in names:
            crd = get(api_client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            if _conditions(crd or {}).get("Established") != "True":
                return False
        return True

    _wait(f"CRDs Established: {', '.join(names)}", established, timeout)
    return names


# --------------------------------------------------------------------------------------------
# The Kubeflow operators

OPERATOR_NAMESPACE = "kubeflow"  # where a cluster runs them; holds their Secret and lease
TRAINING_OPERATOR_SECRET = "training-operator-webhook-cert"
# The training operator's certificate rotator (open-policy-agent/cert-controller) waits until this
# file exists, which in a cluster is its Secret mounted into its pod. The path is fixed in its code;
# the webhook server itself reads $TMPDIR/k8s-webhook-server/serving-certs, one per run.
ROTATOR_CERT_FILE = Path("/tmp/k8s-webhook-server/serving-certs/tls.crt")
# The MPI operator serves /healthz on this port of every interface, fixed in its code: only one
# can run on a machine at a time, so test sessions take turns with a lock file.
MPI_OPERATOR_HEALTH_PORT = 8080
MPI_OPERATOR_LOCK = Path(tempfile.gettempdir()) / "runplane-kube-mpi-operator.lock"


# (apiVersion, kind, replica specs key, {replica type: container}) of each operator's kinds.
_PROBES = (
    ("kubeflow.org/v1", "PyTorchJob", "pytorchReplicaSpecs", {"Master": "pytorch"}),
    ("kubeflow.org/v1", "TFJob", "tfReplicaSpecs", {"Worker": "tensorflow"}),
    ("kubeflow.org/v2beta1", "MPIJob", "mpiReplicaSpecs", {"Launcher": "mpi", "Worker": "mpi"}),
)


def _probe_jobs(namespace: str) -> list[dict[str, Any]]:
    """A suspended PyTorchJob, TFJob and MPIJob: each operator writes a Created condition on its
    own once its controller is running (and, suspended, creates no pod)."""
    return [
        {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": "testenv-probe", "namespace": namespace},
            "spec": {
                "runPolicy": {"suspend": True},
                key: {
                    rtype: {
                        "replicas": 1,
                        "template": {"spec": {"containers": [{"name": c, "image": "probe"}]}},
                    }
                    for rtype, c in replicas.items()
                },
            },
        }
        for api_version, kind, key, replicas in _PROBES
    ]


@dataclass
class Processes:
    """Processes run against a started :class:`ControlPlane`, their logs beside its own."""

    control_plane: ControlPlane
    bin_dir: Path
    log_dir: Path | None = None
    startup_timeout: float = 120.0

    components: list[Component] = field(init=False, default_factory=list)
    startup_seconds: float = field(init=False, default=0.0)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def logs(self) -> Path:
        cp = self.control_plane
        return self.log_dir or cp.log_dir or cp.workdir / "logs"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        _stop_all(self.components)


@dataclass
class KubeflowOperators(Processes):
    """The Kubeflow training operator (PyTorchJob and TFJob only, not its v1 MPIJob) and the MPI
    operator (MPIJob v2beta1), as processes against a started :class:`ControlPlane`.

    They run as the admin user, with leader election off (training operator) or alone in their
    lease (MPI operator), their metrics off, and without webhooks: the training operator's only
    webhook validates jobs, and both operators apply their defaults themselves. The training
    operator still serves its webhook endpoint (it cannot be switched off) on a free port, with the
    control plane's serving certificate.
    """

    lock_timeout: float = 900.0  # another session's MPI operator may hold port 8080 this long

    _lock: IO[bytes] | None = field(init=False, default=None)

    def start(self) -> None:
        t0 = time.monotonic()
        with _stop_on_error(self.stop), self.control_plane.api_client() as api:
            # The operators' namespace, with the Secret the certificate rotator fills (it updates
            # it, so it must exist), as the training operator's manifests create them.
            for manifest in (
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": OPERATOR_NAMESPACE},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": TRAINING_OPERATOR_SECRET,
                        "namespace": OPERATOR_NAMESPACE,
                    },
                },
            ):
                apply(api, manifest, field_manager=TESTENV_FIELD_MANAGER, force=True)
            self._start_training_operator()
            self._start_mpi_operator()
            self._probe(api)
        self.startup_seconds = time.monotonic() - t0

    def stop(self) -> None:
        super().stop()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Component:
        c = Component(name, args, self.logs / f"{name}.log", env=env)
        self.components.append(c)
        c.start()
        return c

    def _start_training_operator(self) -> None:
        cp = self.control_plane
        tmp = cp.workdir / "training-operator"
        certs = tmp / "k8s-webhook-server" / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cp.cert_file("apiserver.crt"), certs / "tls.crt")
        shutil.copyfile(cp.cert_file("apiserver.key"), certs / "tls.key")
        _ensure_file(ROTATOR_CERT_FILE, cp.cert_file("apiserver.crt").read_bytes())
        probe_port = free_port()
        comp = self._spawn(
            "training-operator",
            [
                str(self.bin_dir / "training-operator"),
                "--enable-scheme=pytorchjob",
                "--enable-scheme=tfjob",
                "--metrics-bind-address=0",
                f"--health-probe-bind-address=127.0.0.1:{probe_port}",
                f"--webhook-server-port={free_port()}",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ],
            {
                "KUBECONFIG": str(cp.kubeconfig),
                "MY_POD_NAMESPACE": OPERATOR_NAMESPACE,
                "TMPDIR": str(tmp),
            },
        )
        # Ready once its certificates are in place and its controllers and webhook registered.
        _wait(
            "training-operator /readyz",
            lambda: _http_ok(f"http://127.0.0.1:{probe_port}/readyz"),
            self.startup_timeout,
            comp,
        )

    def _start_mpi_operator(self) -> None:
        self._lock = _lock_file(
            MPI_OPERATOR_LOCK,
            self.lock_timeout,
            f"another test session on this machine runs an MPI operator (port "
            f"{MPI_OPERATOR_HEALTH_PORT} is fixed in its code)",
        )
        cp = self.control_plane
        self._spawn(
            "mpi-operator",
            [
                str(self.bin_dir / "mpi-operator"),
                f"--kubeConfig={cp.kubeconfig}",
                f"--lock-namespace={OPERATOR_NAMESPACE}",
                "--threadiness=4",
                "--kube-api-qps=100",
                "--kube-api-burst=200",
            ],
            {"KUBECONFIG": str(cp.kubeconfig)},
        )

    def _probe(self, api: Any) -> None:
        """Wait until each operator has acted on a job of its kinds, then remove the probes."""
        jobs = _probe_jobs(OPERATOR_NAMESPACE)
        for job in jobs:
            apply(api, job, field_manager=TESTENV_FIELD_MANAGER, force=True)

        def created() -> bool:
            for job in jobs:
                live = get(api, job["apiVersion"], job["kind"], "testenv-probe", OPERATOR_NAMESPACE)
                if "Created" not in _conditions(live or {}):
                    return False
            return True

        _wait("the operators to act on a job", created, self.startup_timeout, *self.components)
        for job in jobs:
            delete(
                api,
                job["apiVersion"],
                job["kind"],
                "testenv-probe",
                OPERATOR_NAMESPACE,
                propagation_policy="Background",
            )


# --------------------------------------------------------------------------------------------
# Kueue

KUEUE_NAMESPACE = "kueue-system"  # where a cluster runs it (its configuration names one)
# Kueue's manager reads its metrics certificate from this path, fixed in its code, whenever it
# does not manage certificates itself (which needs the webhook configurations installed).
KUEUE_METRICS_CERTS = Path("/etc/kueue/metrics/certs")
KUEUE_PROBE = "testenv-probe"


@dataclass
class KueueManager(Processes):
    """Kueue's manager (``cmd/kueue`` of the pinned module) as a process against a started
    :class:`ControlPlane`, with Kueue's CRDs installed.

    It runs without webhooks: no webhook configuration is installed, so the API server never
    calls the endpoint it still serves (on a free port, with the control plane's serving
    certificate). Kueue's webhooks default and validate its objects and suspend jobs created
    unsuspended; Runplane renders the jobs Kueue queues suspended already and its queues whole.
    Leader election, metrics and the visibility server are off; only batch/v1 Jobs are
    integrated. Fair sharing is on, so that ClusterQueues' weights count.
    """

    def start(self) -> None:
        t0 = time.monotonic()
        cp = self.control_plane
        with _stop_on_error(self.stop), cp.api_client() as api:
            install_crds(api, sorted(crd_dir(self.bin_dir, "kueue").glob("*.yaml")))
            apply(
                api,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUEUE_NAMESPACE}},
                field_manager=TESTENV_FIELD_MANAGER,
                force=True,
            )
            probe_port = self._start()
            _wait(
                "kueue /readyz",
                lambda: _http_ok(f"http://127.0.0.1:{probe_port}/readyz"),
                self.startup_timeout,
                *self.components,
            )
            self._probe(api)
        self.startup_seconds = time.monotonic() - t0

    def _start(self) -> int:
        cp = self.control_plane
        home = cp.workdir / "kueue"
        certs = home / "serving-certs"
        certs.mkdir(parents=True, exist_ok=True)
        for target, source in (("tls.crt", "apiserver.crt"), ("tls.key", "apiserver.key")):
            shutil.copyfile(cp.cert_file(source), certs / target)
            _ensure_file(KUEUE_METRICS_CERTS / target, cp.cert_file(source).read_bytes())
        probe_port = free_port()
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": KUEUE_NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"host": "127.0.0.1", "port": free_port(), "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": ["batch/job"]},
            "fairSharing": {"preemptionStrategies": ["LessThanOrEqualToFinalShare"]},
            "clientConnection": {"qps": 100, "burst": 200},
        }
        path = home / "config.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        c = Component(
            "kueue",
            [
                str(self.bin_dir / "kueue"),
                f"--config={path}",
                "--feature-gates=VisibilityOnDemand=false",
            ],
            self.logs / "kueue.log",
            env={"KUBECONFIG": str(cp.kubeconfig)},
        )
        self.components.append(c)
        c.start()
        return probe_port

    def _probe(self, api: Any) -> None:
        """Wait until Kueue's controllers act: a ClusterQueue of an existing flavor goes Active."""
        flavor: dict[str, Any] = {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": KUEUE_PROBE},
        }
        queue: dict[str, Any] = {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": KUEUE_PROBE},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [
                            {"name": KUEUE_PROBE, "resources": [{"name": "cpu", "nominalQuota": 1}]}
                        ],
                    }
                ],
            },
        }
        for manifest in (flavor, queue):
            apply(api, manifest, field_manager=TESTENV_FIELD_MANAGER, force=True)

        def active() -> bool:
            live = get(api, "kueue.x-k8s.io/v1beta2", "ClusterQueue", KUEUE_PROBE)
            return _conditions(live or {}).get("Active") == "True"

        _wait("Kueue to activate a ClusterQueue", active, self.startup_timeout, *self.components)
        for manifest in (queue, flavor):
            delete(
                api,
                manifest["apiVersion"],
                manifest["kind"],
                KUEUE_PROBE,
                propagation_policy="Background",
            )


def _ensure_file(path: Path, data: bytes) -> None:
    """Create ``path`` with ``data`` unless it exists (atomically: others may race for it)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _lock_file(path: Path, timeout: float, holder: str) -> IO[bytes]:
    """An exclusive ``flock`` on ``path``, waiting up to ``timeout``; closing the file frees it."""
    f = path.open("ab")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.monotonic() > deadline:
                f.close()
                raise StartupError(f"waited {timeout:.0f}s for {path}: {holder}") from None
            time.sleep(1)


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[ControlPlane]:
    """Find/build the binaries and run a control plane for the duration of the block."""
    names = ["etcd", "kube-apiserver", CRDS]
    if kwargs.get("controller_manager", True):
        names.append("kube-controller-manager")
    if kwargs.get("scheduler", True):
        names.append("kube-scheduler")
    if kwargs.get("kwok", True):
        names.append("kwok")
    bin_dir = find_binaries(names)
    kwargs.setdefault("crd_dir", crd_dir(bin_dir))
    with ControlPlane(bin_dir=bin_dir, **kwargs) as cp:
        yield cp


if __name__ == "__main__":
    # python -m tests.kube.testenv [--operators]: start, print KUBECONFIG, wait for ^C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so that stop() runs
    with contextlib.ExitStack() as stack:
        cp = stack.enter_context(
            running(log_dir=Path(tempfile.mkdtemp(prefix="runplane-kube-logs-")))
        )
        print(f"export KUBECONFIG={cp.kubeconfig}  # up in {cp.startup_seconds:.1f}s", flush=True)
        if "--operators" in sys.argv[1:]:
            ops = stack.enter_context(KubeflowOperators(cp, find_binaries(OPERATORS)))
            print(f"# operators up in {ops.startup_seconds:.1f}s", flush=True)
        print(f"# logs in {cp.log_dir}; stop with ^C or SIGTERM", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
