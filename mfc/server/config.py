"""`mfc serve` configuration: one table of environment variables, read once at start-up.

Every ``OLLAMA_*`` variable of Ollama's ``envconfig`` that means something on a
CPU build is honoured with Ollama's parsing rules, and each has an ``MFC_*``
twin that wins when both are set (so mfc and Ollama can share a shell). A
variable mfc cannot honour is not silently ignored: ``load`` returns a warning
for it, printed once at start-up. ``docs/serve.md`` renders the same table
(a test checks the two agree).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PORT = 11434
FOREVER = math.inf  # keep_alive < 0: never unload


class ConfigError(ValueError):
    """A value that cannot be used (a bad host string, a bad duration in a request)."""


# --- Go's time.ParseDuration --------------------------------------------------------------------

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string (``"5m"``, ``"1h30m"``, ``"-1s"``, ``"0"``).

    Exactly Go's grammar: an optional sign, then one or more number+unit pairs;
    ``"0"`` alone is the only unitless value. A bare ``"3600"`` is an error, as in
    Ollama's request parsing.
    """
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ConfigError(f"invalid duration {text!r}")
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            unitless = re.fullmatch(r"\d+(\.\d*)?", s[pos:])
            why = "missing unit" if unitless else "unknown unit"
            raise ConfigError(f"invalid duration {text!r}: {why} (use e.g. 5m, 30s, 1h)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def keep_alive_seconds(value: Any) -> float:
    """A request's or the environment's keep_alive as seconds; ``FOREVER`` when negative.

    A JSON number is seconds; a string is a Go duration. ``bool`` is refused
    (JSON ``true`` is not a number, though Python's bool is an int).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError("keep_alive must be a number of seconds or a duration string like 5m")
    seconds = float(value) if not isinstance(value, str) else parse_go_duration(value)
    if math.isnan(seconds):
        raise ConfigError("keep_alive must be a number, not NaN")
    return FOREVER if seconds < 0 else seconds


# --- OLLAMA_HOST --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """Where the server listens (``scheme`` is kept only to print a URL)."""

    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def connect_url(self) -> str:
        """The URL a client on this machine uses (0.0.0.0 / :: become loopback)."""
        host = self.host
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return self.url
        if ip.is_unspecified:
            host = "127.0.0.1" if ip.version == 4 else "::1"
        return Address(host, self.port, self.scheme).url

    @property
    def is_loopback(self) -> bool:
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_host(text: str | None) -> Address:
    """Ollama's ``envconfig.Host`` rules: ``:port``, ``host``, ``host:port``, ``http://host:port``.

    Empty means ``127.0.0.1:11434``; a scheme without a port means 80 (http) or
    443 (https); a bare host keeps 11434. A path after the address is ignored
    (the server serves at its root). Unlike Ollama, a bad port is an error, not
    a silent fallback to the default.
    """
    s = (text or "").strip().strip("\"'")
    default_port = DEFAULT_PORT
    scheme, sep, rest = s.partition("://")
    if not sep:
        scheme, rest = "http", s
    elif scheme == "http":
        default_port = 80
    elif scheme == "https":
        default_port = 443
    else:
        raise ConfigError(f"unsupported scheme {scheme!r} in host {text!r} (use http://)")
    hostport = rest.split("/", 1)[0]
    host, port_text = _split_host_port(hostport)
    if host is None:  # no port: the whole thing is a host (or an IPv6 literal)
        host, port = hostport.strip("[]") or "127.0.0.1", default_port
    else:
        host = host or "127.0.0.1"
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"invalid port {port_text!r} in host {text!r}") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} out of range in host {text!r}")
    return Address(host, port, scheme)


def _split_host_port(hostport: str) -> tuple[str | None, str]:
    """Go's net.SplitHostPort, loosely: ``(host, port)`` or ``(None, "")`` when no port."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ConfigError(f"missing ']' in host {hostport!r}")
        if hostport[end + 1 : end + 2] == ":":
            return hostport[1:end], hostport[end + 2 :]
        return None, ""
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return None, ""  # no colon, or a bare IPv6 literal


# --- the table ----------------------------------------------------------------------------------


def _bool(text: str) -> bool:
    """Go's strconv.ParseBool, with Ollama's rule that an unparsable value means true."""
    return text.strip() not in ("0", "f", "F", "FALSE", "false", "False")


def _uint(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()):
        raise ConfigError(f"{text!r} is not a non-negative integer")
    return int(text)


def _positive(text: str) -> int:
    value = _uint(text)
    if value < 1:
        raise ConfigError(f"{text!r} is not a positive integer")
    return value


def _env_duration(text: str) -> float:
    """Ollama's env rule: a Go duration, else integer seconds; negative is forever."""
    try:
        seconds = parse_go_duration(text)
    except ConfigError:
        if not re.fullmatch(r"-?\d+", text.strip()):
            raise
        seconds = float(int(text))
    return FOREVER if seconds < 0 else seconds


def _load_timeout(text: str) -> float:
    seconds = _env_duration(text)
    return FOREVER if seconds <= 0 else seconds


def _debug(text: str) -> int:
    """0 info, 1 debug, 2 trace (Ollama: bool or integer level)."""
    t = text.strip()
    if re.fullmatch(r"-?\d+", t):
        return max(0, int(t))
    return 1 if _bool(t) else 0


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in text.split(",") if o.strip())


def _kv_type(text: str) -> str:
    t = text.strip().lower()
    if t not in ("f16", "f32", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"):
        raise ConfigError(f"unknown K/V cache type {text!r} (f16, q8_0, q4_0, ...)")
    return t


@dataclass(frozen=True)
class EnvVar:
    suffix: str  # the part after OLLAMA_ / MFC_
    attr: str | None  # the ServerConfig field it sets; None: accepted but not honoured
    parse: Callable[[str], Any] | None
    default: str  # as documented
    doc: str

    @property
    def names(self) -> tuple[str, str]:
        return f"MFC_{self.suffix}", f"OLLAMA_{self.suffix}"


# Honoured: Ollama's meaning, on a CPU build. The last group is Ollama's variables that do not
# apply here; setting one prints a warning at start-up.
ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("HOST", "address", parse_host, "127.0.0.1:11434", "address to listen on"),
    EnvVar("MODELS", "models", lambda s: Path(s).expanduser(), "~/.mfc/models", "the model store"),
    EnvVar("KEEP_ALIVE", "keep_alive", _env_duration, "5m", "how long an idle model stays loaded"),
    EnvVar(
        "MAX_LOADED_MODELS", "max_loaded_models", _uint, "3", "models loaded at once (LRU evicts)"
    ),
    EnvVar("NUM_PARALLEL", "num_parallel", _uint, "4", "sequences decoded together per model"),
    EnvVar("MAX_QUEUE", "max_queue", _uint, "512", "waiting requests before 503"),
    EnvVar("CONTEXT_LENGTH", "context_length", _uint, "4096", "default num_ctx"),
    EnvVar("ORIGINS", "origins", _origins, "", "extra CORS origins, comma separated"),
    EnvVar("FLASH_ATTENTION", "flash_attention", _bool, "false", "flash attention"),
    EnvVar("KV_CACHE_TYPE", "kv_cache_type", _kv_type, "f16", "K/V cache type"),
    EnvVar("NOPRUNE", "noprune", _bool, "false", "keep unreferenced blobs on delete"),
    EnvVar("DEBUG", "debug", _debug, "0", "1 debug log, 2 trace"),
    EnvVar("LOAD_TIMEOUT", "load_timeout", _load_timeout, "5m", "give up on a stalled load"),
    EnvVar("ALLOWED_HOSTS", "allowed_hosts", _origins, "", "extra Host names accepted (mfc)"),
    EnvVar(
        "MAX_TRANSFER_STREAMS",
        "max_transfer_streams",
        _positive,
        "4",
        "parallel connections per blob a pull downloads",
    ),
    # Not applicable to mfc on a CPU build: warned about, never silently ignored.
    EnvVar("GPU_OVERHEAD", None, None, "", "VRAM reserve: no GPU scheduling in mfc"),
    EnvVar("SCHED_SPREAD", None, None, "", "multi-GPU spread: no GPU scheduling in mfc"),
    EnvVar("LLM_LIBRARY", None, None, "", "mfc runs the llama.cpp it was built with"),
    EnvVar("VULKAN", None, None, "", "GPU back-ends are chosen when llama.cpp is built"),
    EnvVar("IGPU_ENABLE", None, None, "", "GPU back-ends are chosen when llama.cpp is built"),
    EnvVar("NO_CLOUD", None, None, "", "mfc has no cloud features"),
    EnvVar("REMOTES", None, None, "", "mfc has no remote (cloud) models"),
    EnvVar("AUTH", None, None, "", "no auth: mfc binds 127.0.0.1 unless told otherwise"),
    EnvVar("DEBUG_LOG_REQUESTS", None, None, "", "request logging is not implemented"),
    EnvVar("GO_TEMPLATE", None, None, "", "mfc always renders TEMPLATE (translated to Jinja2)"),
    EnvVar("MULTIUSER_CACHE", None, None, "", "not applicable"),
    EnvVar("NEW_ENGINE", None, None, "", "mfc has one engine (llama.cpp)"),
)


@dataclass(frozen=True)
class ServerConfig:
    address: Address = field(default_factory=lambda: parse_host(None))
    models: Path | None = None  # None: the store's own default ($MFC_MODELS, ~/.mfc/models)
    keep_alive: float = 300.0  # seconds; FOREVER never unloads
    max_loaded_models: int = 3
    num_parallel: int = 4
    max_queue: int = 512
    context_length: int = 4096
    origins: tuple[str, ...] = ()
    flash_attention: bool = False
    kv_cache_type: str = "f16"
    noprune: bool = False
    debug: int = 0
    load_timeout: float = 300.0
    allowed_hosts: tuple[str, ...] = ()
    max_transfer_streams: int = 4  # parallel Range connections per blob of /api/pull
    max_body_bytes: int = 64 * 1024 * 1024  # JSON bodies; blob uploads stream and have no limit

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Ollama's default origins plus ORIGINS (``*`` wildcards allowed)."""
        extra = []
        for host in ("localhost", "127.0.0.1", "0.0.0.0"):
            extra += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
        extra += ["app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*"]
        return (*self.origins, *extra)


@dataclass(frozen=True)
class Loaded:
    config: ServerConfig
    warnings: tuple[str, ...]
    sources: Mapping[str, str]  # field -> the variable that set it


def load(env: Mapping[str, str] | None = None, **overrides: Any) -> Loaded:
    """Read the table from ``env``: ``MFC_X`` wins over ``OLLAMA_X``; bad values are errors.

    ``overrides`` (command-line flags) win over both. Unparsable values raise
    ConfigError naming the variable, so `mfc serve` stops with a clear message
    instead of running with a default the user did not ask for.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    for var in ENV_VARS:
        for name in var.names:
            raw = env.get(name, "").strip().strip("\"'")
            if not raw:
                continue
            if var.attr is None or var.parse is None:
                warnings.append(f"{name} is set but mfc does not use it: {var.doc}")
                break
            try:
                values[var.attr] = var.parse(raw)
            except ConfigError as exc:
                raise ConfigError(f"{name}={raw!r}: {exc}") from None
            sources[var.attr] = name
            break
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
            sources[key] = "command line"
    if values.get("num_parallel") == 0:
        values["num_parallel"] = 4  # Ollama: 0 means "pick a default"
    if values.get("max_loaded_models") == 0:
        values["max_loaded_models"] = 3
    if values.get("context_length") == 0:
        values.pop("context_length")
    kv = values.get("kv_cache_type", "f16")
    if kv != "f16" and not values.get("flash_attention", False):
        warnings.append(
            f"{sources.get('kv_cache_type')}={kv} needs flash attention (llama.cpp quantizes the"
            " V cache only with it): set FLASH_ATTENTION=1; using f16"
        )
        values["kv_cache_type"] = "f16"
    return Loaded(ServerConfig(**values), tuple(warnings), sources)
