"""Copy the Python sources that the peers' own models and samplers need (LlamaGen's GPT and
``generate()``, VAR's ``models`` + ``dist.py``, MAR's ``models`` + ``diffusion``) from local clones
into one git-ignored folder of the checkout (``peers/``), with their LICENSE files and the timm wheel
MAR imports, so that ``benchmarks/gpu_side_by_side.py`` can run them on a machine that reaches no
network (the device tool carries ignored paths named in ``carry``: 64 MiB in all). No assets, no
weights, no notebooks; never commit ``peers/``.

    git clone https://github.com/FoundationVision/LlamaGen /tmp/LlamaGen
    git clone https://github.com/FoundationVision/VAR /tmp/VAR
    git clone https://github.com/LTH14/mar /tmp/mar
    python benchmarks/prepare_peers.py --llamagen /tmp/LlamaGen --var /tmp/VAR --mar /tmp/mar --out peers

Writes ``peers/<name>/...`` (the same relative paths as in each clone), ``peers/wheels/timm-*.whl``
(``pip download timm --no-deps``; ``--no-wheel`` skips it) and ``peers/MANIFEST.json`` (files, sizes,
each clone's commit), and prints the total size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

#: peer -> (files or folders of *.py inside the clone, a file that must exist to recognise the clone)
PEERS = {
    "LlamaGen": (("autoregressive/models/gpt.py", "autoregressive/models/generate.py", "utils/drop_path.py",
                  "LICENSE"), "autoregressive/models/gpt.py"),
    "VAR": (("models", "dist.py", "LICENSE"), "models/var.py"),
    "mar": (("models/mar.py", "models/diffloss.py", "diffusion", "LICENSE"), "models/mar.py"),
}
LIMIT_BYTES = 64 * 2**20


def commit_of(clone: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def copy_peer(name: str, clone: Path, out: Path) -> list[dict]:
    """Copy the peer's needed sources from ``clone`` into ``out / name``; returns the files copied."""
    entries, marker = PEERS[name]
    if not (clone / marker).is_file():
        raise SystemExit(f"prepare_peers.py: {clone} is not a {name} clone (no {marker}); clone it first")
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    copied = []
    for entry in entries:
        source = clone / entry
        files = sorted(source.rglob("*.py")) if source.is_dir() else [source]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            relative = file.relative_to(clone)
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target / relative)
            copied.append({"path": f"{name}/{relative}", "bytes": file.stat().st_size})
    return copied


def download_timm(out: Path, version: str | None) -> list[dict]:
    wheels = out / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    requirement = f"timm=={version}" if version else "timm"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(wheels),
               requirement]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"prepare_peers.py: pip download {requirement} failed ({last}); pass --no-wheel to skip it")
    return [{"path": f"wheels/{wheel.name}", "bytes": wheel.stat().st_size} for wheel in sorted(wheels.glob("*.whl"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llamagen", type=Path, help="a clone of FoundationVision/LlamaGen")
    parser.add_argument("--var", type=Path, help="a clone of FoundationVision/VAR")
    parser.add_argument("--mar", type=Path, help="a clone of LTH14/mar")
    parser.add_argument("--out", type=Path, default=Path("peers"))
    parser.add_argument("--timm-version", default=None, help="pin the timm wheel (default: the newest)")
    parser.add_argument("--no-wheel", action="store_true", help="do not download the timm wheel")
    args = parser.parse_args(argv)
    clones = {"LlamaGen": args.llamagen, "VAR": args.var, "mar": args.mar}
    if not any(clones.values()):
        parser.error("name at least one clone (--llamagen, --var, --mar)")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"peers": {}, "files": []}
    for name, clone in clones.items():
        if clone is None:
            continue
        files = copy_peer(name, clone, args.out)
        manifest["peers"][name] = {"clone": str(clone), "commit": commit_of(clone), "files": len(files)}
        manifest["files"] += files
    if not args.no_wheel:
        manifest["files"] += download_timm(args.out, args.timm_version)
    total = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    manifest["total_bytes"] = total
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name, info in manifest["peers"].items():
        print(f"{name}: {info['files']} files from {info['clone']} at {info['commit']}")
    print(f"{args.out}: {len(manifest['files'])} files, {total / 2**20:.2f} MiB in all "
          f"({'well under' if total < LIMIT_BYTES / 4 else 'CLOSE TO'} the device tool's 64 MiB carry limit)")
    if total > LIMIT_BYTES:
        raise SystemExit(f"prepare_peers.py: {args.out} is {total / 2**20:.1f} MiB, over the 64 MiB the device tool carries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
