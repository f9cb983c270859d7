"""Front-end throughput: MB/s of `parse_text` and `check_text` on a large generated Modelfile.

The Modelfile mixes every instruction, comments, blank lines and multi-line
quoted values (templates, licenses). Best-of-N wall time; a baseline in the
same run (one regex pass over the lines, the least any parser must do) puts
the figure in proportion.

A second case parses N lines whose quoted values never close (1k, 2k, 4k):
the time must grow linearly (it was quadratic: each such value scanned to the
end of the file). The ratio 4k/1k is printed; linear is about 4.

    python bench/parse.py [--mb 4] [--reps 5]
"""

from __future__ import annotations

import argparse
import re
import time

from mfc.modelfile import check_text, parse_text

TEMPLATE = (
    '"""{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>'
    "{{ end }}{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    '{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n"""'
)
CHUNK = "\n".join(
    [
        "# a generated block",
        "FROM llama3.2:3b",
        "PARAMETER temperature 0.7",
        "PARAMETER top_k 40",
        "PARAMETER stop <|eot_id|>",
        'PARAMETER stop "<|end_of_text|> "',
        f"TEMPLATE {TEMPLATE}",
        "SYSTEM You are a helpful assistant who answers briefly and precisely.",
        'LICENSE """MIT License\n\nPermission is hereby granted, free of charge, to anyone\n"""',
        "MESSAGE user What is the capital of France?",
        "MESSAGE assistant Paris.",
        "ADAPTER --scale=0.5 ./lora.gguf",
        "",
    ]
)


def best(fn, text: str, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    text = CHUNK * max(1, int(args.mb * 1e6 / len(CHUNK.encode())))
    size = len(text.encode()) / 1e6
    parse_text("FROM warmup\n")  # grammar load is not part of the figure
    line_re = re.compile(r"[ \t]*([A-Za-z]+)[ \t]+([^\r\n]*)")

    def baseline(t: str) -> None:
        for _ in line_re.finditer(t):
            pass

    base = best(baseline, text, args.reps)
    parse = best(lambda t: parse_text(t), text, args.reps)
    check = best(lambda t: check_text(t), text, args.reps)
    result = parse_text(text)
    assert result.ok, result.diagnostics[:3]
    print(f"Modelfile: {size:.2f} MB, {len(result.instructions)} instructions")
    print(f"baseline regex scan : {size / base:8.1f} MB/s")
    print(f"parse_text          : {size / parse:8.2f} MB/s  ({base / parse:.3f} of baseline)")
    print(f"check_text          : {size / check:8.2f} MB/s  ({base / check:.3f} of baseline)")
    unterminated(args.reps)


def unterminated(reps: int) -> None:
    """Lines whose quoted value never closes: linear time (4k/1k ~ 4), not quadratic (~ 16)."""
    times = {}
    for n in (1000, 2000, 4000):
        for opener in ('"', '"""'):
            text = "FROM x\n" + "".join(f"SYSTEM {opener}never closed {i}\n" for i in range(n))
            times[n, opener] = best(lambda t: parse_text(t), text, reps)
    for opener in ('"', '"""'):
        row = "  ".join(f"{n // 1000}k {times[n, opener]:6.3f} s" for n in (1000, 2000, 4000))
        ratio = times[4000, opener] / times[1000, opener]
        print(f"unterminated {opener:<3}    : {row}  (4k/1k = {ratio:.1f})")


if __name__ == "__main__":
    main()
