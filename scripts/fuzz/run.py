"""Run a fuzz target under atheris (libFuzzer), bounded in time.

    python scripts/fuzz/run.py parser --seconds 60
    python scripts/fuzz/run.py all --seconds 300        # every target, one after another
    python scripts/fuzz/run.py everything --seconds 30  # one process, first byte picks

Targets are in targets.py. The seed corpus is written to ``var/fuzz/<target>/``
(kept between runs, so a long run continues where the last one stopped); crashes land
in ``var/fuzz/crashes/`` as files libFuzzer can replay:

    python scripts/fuzz/run.py parser var/fuzz/crashes/crash-<sha1>

Without atheris (``pip install atheris``; wheels exist for CPython 3.11 on Linux)
the targets can still be replayed on files with ``--replay``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


def seed(name: str, corpus: Path) -> None:
    import targets

    corpus.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(targets.SEEDS.get(name, ())):
        path = corpus / f"seed-{index}"
        if not path.exists():
            path.write_bytes(data)
    if name == "everything":
        for index, (target, seeds) in enumerate(targets.SEEDS.items()):
            pick = list(targets.TARGETS).index(target)
            for n, data in enumerate(seeds):
                (corpus / f"seed-{target}-{n}").write_bytes(bytes([pick]) + data)


def fuzz(name: str, seconds: int, extra: list[str]) -> int:
    import atheris

    with atheris.instrument_imports(include=["voicegw"]):
        import targets
    target = targets.everything if name == "everything" else targets.TARGETS[name]
    corpus = ROOT / "var" / "fuzz" / name
    crashes = ROOT / "var" / "fuzz" / "crashes"
    crashes.mkdir(parents=True, exist_ok=True)
    files = [arg for arg in extra if not arg.startswith("-")]
    args = [sys.argv[0]]
    if not files:  # a real run, not a replay of crash files
        seed(name, corpus)
        args += [str(corpus), f"-max_total_time={seconds}", f"-artifact_prefix={crashes}/{name}-",
                 "-max_len=4096", "-rss_limit_mb=2048", "-print_final_stats=1"]
    atheris.Setup(args + extra, target)
    atheris.Fuzz()
    return 0


def replay(name: str, files: list[str]) -> int:
    import targets

    target = targets.everything if name == "everything" else targets.TARGETS[name]
    for file in files:
        target(Path(file).read_bytes())
        print(f"{file}: no failure")
    return 0


def main() -> int:
    import targets

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=[*targets.TARGETS, "everything", "all"])
    parser.add_argument("--seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument("--replay", action="store_true", help="run the files given, without atheris")
    args, extra = parser.parse_known_args()
    if args.replay:
        return replay(args.target, extra)
    if args.target == "all":  # each target in its own process: libFuzzer owns the process
        failed = []
        for name in targets.TARGETS:
            print(f"=== {name} ({args.seconds} s)", flush=True)
            code = subprocess.call([sys.executable, __file__, name, "--seconds", str(args.seconds), *extra])
            if code:
                failed.append(name)
        print("failed: " + ", ".join(failed) if failed else "no failures")
        return 1 if failed else 0
    return fuzz(args.target, args.seconds, extra)


if __name__ == "__main__":
    sys.exit(main())
