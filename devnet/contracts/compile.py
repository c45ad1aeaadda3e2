"""Regenerate the committed ABI + bytecode JSON in devnet/contracts/artifacts/ from the .sol sources.

Tests and `--devnet` load the committed artifacts and need no compiler; run this only after editing
a contract. It uses solc-js (npm `solc`, a devDependency in devnet/package.json) so nothing is
downloaded at run time:

    mkdir -p .tools && cp devnet/package.json devnet/package-lock.json .tools/
    npm ci --prefix .tools --no-audit --no-fund        # includes solc (dev dependency)
    python devnet/contracts/compile.py                  # or --check to verify artifacts are current
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SOLCJS = REPO / ".tools" / "node_modules" / "solc" / "solc.js"
ARTIFACTS = HERE / "artifacts"
# cancun: supported by anvil, Ethereum mainnet and BASE alike, so the bytecode is realistic everywhere.
SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


_NODE_COMPILE = """
const solc = require(process.argv[1]);
const fs = require("fs");
fs.writeFileSync(process.argv[2], solc.compile(fs.readFileSync(0, "utf8")));
console.log(solc.version());
"""


def compile_sources() -> dict[str, dict]:
    """Compile every .sol file here with solc-js and return artifact dicts keyed by contract name."""
    if not SOLCJS.exists():
        sys.exit(f"solc-js not found at {SOLCJS}: run `npm ci --prefix .tools` (see this file's docstring)")
    sources = {p.name: {"content": p.read_text()} for p in sorted(HERE.glob("*.sol"))}
    request = {"language": "Solidity", "sources": sources, "settings": SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "out.json"
        # Through solc-js's JS API into a file: its CLI's `--standard-json` exits before a large piped
        # stdout is flushed, which truncates the JSON.
        version = subprocess.run(
            ["node", "-e", _NODE_COMPILE, str(SOLCJS.parent), str(out_path)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        output = json.loads(out_path.read_text())
    errors = [e for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        sys.exit("\n".join(e["formattedMessage"] for e in errors))
    artifacts: dict[str, dict] = {}
    for source_name, contracts in output["contracts"].items():
        for contract_name, out in contracts.items():
            bytecode = out["evm"]["bytecode"]["object"]
            if not bytecode:  # interfaces
                continue
            artifacts[contract_name] = {
                "contractName": contract_name,
                "sourceName": source_name,
                "compiler": {"name": "solc-js", "version": version, "settings": SETTINGS},
                "abi": out["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + out["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def render(artifact: dict) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if committed artifacts are stale")
    args = parser.parse_args()
    artifacts = compile_sources()
    stale = [
        name
        for name, art in artifacts.items()
        if not (ARTIFACTS / f"{name}.json").exists() or (ARTIFACTS / f"{name}.json").read_text() != render(art)
    ]
    if args.check:
        print("stale: " + ", ".join(stale) if stale else "artifacts are current")
        return 1 if stale else 0
    ARTIFACTS.mkdir(exist_ok=True)
    for name, art in artifacts.items():
        (ARTIFACTS / f"{name}.json").write_text(render(art))
    print(f"wrote {len(artifacts)} artifacts to {ARTIFACTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
