"""A tiny Docker token server for the token-auth registry tests (the token spec's realm).

It issues real JWTs (ES256, the signing certificate in the ``x5c`` header) that the
registry's ``auth.token`` section verifies against ``rootcertbundle``: ``iss``, ``aud`` =
the service, ``nbf``/``exp``, and the ``access`` claim. Anonymous callers get ``pull`` only;
the one user (Basic credentials) gets what the scope asks for; a wrong password gets 401.
It counts the token requests it answers, so tests can see tokens being cached.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ISSUER = "mfc-test-issuer"
SERVICE = "mfc-test-registry"


@dataclass
class TokenServer:
    user: str
    password: str
    cert_pem: Path
    url: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _key_and_cert() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mfc test token signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def start_token_server(tmp: Path, user: str, password: str, lifetime: int = 300) -> TokenServer:
    key, cert = _key_and_cert()
    cert_pem = tmp / "token-signer.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    state = TokenServer(user, password, cert_pem)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            state.requests.append(query)
            who = ""
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                given = base64.b64decode(header[6:]).decode()
                if given != f"{state.user}:{state.password}":
                    self.send_response(401)
                    self.end_headers()
                    return
                who = state.user
            access = []
            scope = query.get("scope", "")
            if scope.count(":") >= 2:
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                wanted = actions.split(",")
                granted = wanted if who else [a for a in wanted if a == "pull"]
                access.append({"type": kind, "name": name, "actions": granted})
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": who,
                "aud": query.get("service", ""),
                "exp": now + lifetime,
                "nbf": now - 10,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="ES256", headers={"x5c": x5c})
            body = json.dumps({"token": token, "expires_in": lifetime}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state._server = server
    state.url = f"http://127.0.0.1:{server.server_address[1]}/token"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state
