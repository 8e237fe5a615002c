"""The report: one table with the machine facts, and the same figures as JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import Config
from .system import SystemResult

Figure = Callable[[SystemResult], float | None]


def _light(attr: str) -> Figure:
    """A light-load figure of a result (None if the phase did not run)."""
    return lambda r: getattr(r.light, attr) if r.light is not None else None


def _light_e2e(key: str) -> Figure:
    """A light-load e2e percentile of a result."""
    return lambda r: (r.light.e2e or {}).get(key) if r.light is not None else None


def _idle(attr: str) -> Figure:
    """An idle-phase figure of a result."""
    return lambda r: getattr(r.idle, attr) if r.idle is not None else None


# key → (label, how to read it from a result)
FIGURES: dict[str, tuple[str, Figure]] = {
    "throughput_msg_s": ("throughput (msg/s)", lambda r: r.throughput_msg_s),
    "pingpong_p50_ms": ("ping-pong e2e p50 (ms)", lambda r: r.pingpong.get("p50_ms")),
    "pingpong_p95_ms": ("ping-pong e2e p95 (ms)", lambda r: r.pingpong.get("p95_ms")),
    "pingpong_p99_ms": ("ping-pong e2e p99 (ms)", lambda r: r.pingpong.get("p99_ms")),
    "send_ack_p50_ms": ("send->send_result p50 (ms) [1]", lambda r: r.pingpong_ack.get("p50_ms")),
    "send_ack_p99_ms": ("send->send_result p99 (ms) [1]", lambda r: r.pingpong_ack.get("p99_ms")),
    "load_send_ack_p50_ms": (
        "under load: send->result p50 (ms)",
        lambda r: r.load_ack.get("p50_ms"),
    ),
    "load_send_ack_p99_ms": (
        "under load: send->result p99 (ms)",
        lambda r: r.load_ack.get("p99_ms"),
    ),
    "load_e2e_p50_ms": ("under load: e2e p50 (ms)", lambda r: r.load_e2e.get("p50_ms")),
    "load_e2e_p99_ms": ("under load: e2e p99 (ms)", lambda r: r.load_e2e.get("p99_ms")),
    "server_cpu_us_per_msg": ("server CPU per message (us)", lambda r: r.server_cpu_us_per_msg),
    "backend_cpu_us_per_msg": (
        "PostgreSQL+Redis CPU/msg (us) [5]",
        lambda r: r.backend_cpu_us_per_msg,
    ),
    "server_cpu_pct": ("server CPU during load (%)", lambda r: r.server_cpu_pct),
    "client_cpu_pct": ("client CPU during load (%) [2]", lambda r: r.client_cpu_pct),
    "light_rate_msg_s": ("light load: offered (msg/s) [3]", _light("rate_msg_s")),
    "light_cpu_us_per_msg": ("light load: server CPU/msg (us)", _light("server_cpu_us_per_msg")),
    "light_user_pct": ("light load: of which user (%)", _light("server_user_pct")),
    "light_e2e_p50_ms": ("light load: e2e p50 (ms)", _light_e2e("p50_ms")),
    "light_e2e_p99_ms": ("light load: e2e p99 (ms)", _light_e2e("p99_ms")),
    "light_send_lag_p99_ms": ("light load: client lag p99 (ms)", _light("send_lag_p99_ms")),
    "idle_streams": ("idle: streams open [4]", _idle("streams")),
    "idle_rss_per_stream_kb": ("idle: server RSS/stream (KiB)", _idle("rss_per_stream_kb")),
}


def figures(r: SystemResult) -> dict[str, float | None]:
    """The compared figures of one system: msg/s, ms, %, µs/msg and KiB."""
    return {key: read(r) for key, (_, read) in FIGURES.items()}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None if either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(value: float | None, digits: int = 2) -> str:
    """A table cell: ``-`` for missing, thousands separators from 1000 up."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def machine_line(machine: dict[str, Any]) -> list[str]:
    """The machine facts, two lines."""
    return [
        f"machine: {machine['cpu_count']} cores (affinity {machine['cpu_affinity']}) "
        f"{machine.get('cpu_model') or '?'}, {machine['platform']}, disk "
        f"{machine.get('disk') or '?'}, load avg 1m {fmt(machine.get('loadavg_1m_start'))} -> "
        f"{fmt(machine.get('loadavg_1m_end'))}",
        f"software: Python {machine['python']}, grpcio {machine['grpcio']}, protobuf "
        f"{machine['protobuf_impl']}, uvloop {machine['uvloop'] or 'no'} (client and servers), "
        f"SQLite {machine['sqlite']}, hubbub {machine['hubbub_revision'] or '?'}",
    ]


def render_table(
    cfg: Config,
    machine: dict[str, Any],
    base: SystemResult,
    hub: SystemResult,
    cluster: SystemResult | None = None,
    extra: list[str] | None = None,
) -> str:
    """The human-readable report (``extra``: lines of the optional phases)."""
    fb, fh = figures(base), figures(hub)
    fc = figures(cluster) if cluster is not None else None
    width = 78 + (30 if fc is not None else 0)
    header = f"{'figure':<36}{'baseline':>12}{'hubbub':>12}{'hubbub/baseline':>18}"
    if fc is not None:
        header += f"{'cluster':>12}{'cluster/hubbub':>18}"
    lines = [
        f"Hubbub bench: {cfg.pairs} pairs, {hub.throughput_messages} msgs (hubbub) / "
        f"{base.throughput_messages} (baseline), window {cfg.window}, body {cfg.body_bytes} B, "
        f"ping-pong {cfg.pingpong}, ack every {cfg.ack_every}, light load "
        f"{cfg.light_s:g} s, idle {cfg.idle}",
        *machine_line(machine),
        "",
        header,
        "-" * width,
    ]
    for key, (label, _) in FIGURES.items():
        if fb[key] is None and fh[key] is None and (fc is None or fc[key] is None):
            continue  # a phase that did not run
        r = ratio(fh[key], fb[key])
        row = (
            f"{label:<36}{fmt(fb[key]):>12}{fmt(fh[key]):>12}"
            f"{(fmt(r) + 'x') if r is not None else '-':>18}"
        )
        if fc is not None:
            rc = ratio(fc[key], fh[key])
            row += f"{fmt(fc[key]):>12}{(fmt(rc) + 'x') if rc is not None else '-':>18}"
        lines.append(row)
    lines.append("-" * width)
    for res in (base, hub, *([cluster] if cluster is not None else [])):
        i = res.integrity
        cap = " TIME-CAPPED" if res.throughput_capped else ""
        lines.append(
            f"{res.name:<9} sent {i.sent} received {i.received} results {i.send_results} | "
            f"lost {i.lost} dup {i.duplicated} unexpected {i.unexpected} corrupt {i.corrupt} "
            f"errors {i.errors} out-of-order {i.out_of_order} broken {i.broken_streams} "
            f"receipts {i.receipts} | "
            f"load {fmt(res.throughput_elapsed_s)} s, setup {fmt(res.setup_s)} s{cap}"
        )
    if extra:
        lines += ["-" * width, *extra]
    lines += [
        "[1] hubbub: durable (SQLite WAL, synchronous=FULL, group commit); baseline: in-memory",
        "    relay answer, nothing stored. e2e = send written -> message read at recipient.",
        "[2] ~100% means the single client process, not the server, limits throughput.",
        "[3] open loop at --light-fraction of the baseline's max (same rate for every system),",
        "    spread over the pairs; client lag = write time - scheduled time (the rate holds",
        "    only if it is small). CPU per message counts user+system of the server process(es).",
        "[4] logged-in Chat streams that send nothing; RSS/stream = server RSS delta / streams.",
    ]
    if fc is not None:
        lines += [
            "[5] cluster: two hubbub-server nodes on throw-away PostgreSQL (fsync=off) + Redis,",
            "    each pair's sender and receiver on different nodes; server CPU = both nodes;",
            "    PostgreSQL+Redis CPU over all load phases / messages received (a lower bound).",
        ]
    return "\n".join(lines)
