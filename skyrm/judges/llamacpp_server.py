"""``python -m skyrm.judges.llamacpp_server``: llama-cpp-python's OpenAI-compatible server, safe on AMX CPUs.

``python -m llama_cpp.server`` loads models with weight repacking on, which
segfaults on the first decode on CPUs with AMX (see ``skyrm.judges.llamacpp``).
This runs the same server with the same arguments, plus ``--repack auto|on|off``
(default auto: off where the CPU has AMX), so ``openai:`` judges can be served
from such a machine:

    python -m skyrm.judges.llamacpp_server --model model.gguf --port 8080

Deliberately not here: any server code of our own (llama_cpp.server does the work).
"""

from __future__ import annotations

import sys

from skyrm.judges.llamacpp import model_params_override, repack_decision


def split_repack(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take ``--repack X`` / ``--repack=X`` out of the arguments; the rest go to llama_cpp.server."""
    rest: list[str] = []
    value: str | None = None
    args = iter(argv)
    for arg in args:
        if arg == "--repack":
            value = next(args, None)
        elif arg.startswith("--repack="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return value, rest


def main(argv: list[str] | None = None) -> None:
    from llama_cpp.server.__main__ import main as serve

    option, rest = split_repack(list(sys.argv[1:] if argv is None else argv))
    use_repack, reason = repack_decision(option)
    print(f"skyrm: llama.cpp weight repacking {'on' if use_repack else 'off'} ({reason})", file=sys.stderr)
    sys.argv = [sys.argv[0], *rest]
    with model_params_override(use_extra_bufts=use_repack):
        serve()


if __name__ == "__main__":
    main()
