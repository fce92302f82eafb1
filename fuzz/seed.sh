#!/usr/bin/env bash
# Seeds fuzz/corpus/ from the bundled fixtures: small .npy files of every dtype and rank the corpus
# holds, a big-endian and a Fortran-order array, and the manifest cut down to a few cases.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/npy corpus/manifest
python3 - <<'PY'
import json, os, shutil, struct

manifest = json.load(open("../fixtures/manifest.json"))
seen = {}
for case in manifest["cases"]:
    files = list(case["tensors"].values())
    if case["expected"]["outcome"] == "values":
        files += [case["expected"][key] for key in ("grad_output", "loss", "grad_input")]
    for file in files:
        key = (file["dtype"], len(file["shape"]))
        if key not in seen and os.path.getsize("../fixtures/" + file["path"]) < 4096:
            seen[key] = file["path"]
for (dtype, rank), path in seen.items():
    shutil.copy("../fixtures/" + path, f"corpus/npy/{dtype}-{rank}d.npy")


def npy(header, data, version=1):
    header = header.encode()
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + data


seeds = {
    "big-endian.npy": npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }\n",
                          struct.pack(">4f", 1, 2, 3, 4)),
    "fortran.npy": npy("{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }\n",
                       struct.pack("<6q", 0, 3, 1, 4, 2, 5)),
    "v3-bool.npy": npy("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }\n",
                       b"\x01\x00\x01", 3),
}
for name, data in seeds.items():
    open("corpus/npy/" + name, "wb").write(data)

values = [c for c in manifest["cases"] if c["expected"]["outcome"] == "values"]
errors = [c for c in manifest["cases"] if c["expected"]["outcome"] == "error"]
for name, cases in [("values", values[:2]), ("error", errors[:2]),
                    ("mixed", [values[500], errors[100], values[1500]]), ("empty", [])]:
    with open(f"corpus/manifest/{name}.json", "w") as out:
        json.dump(dict(manifest, cases=cases), out, indent=2, sort_keys=True)
PY
echo "seeded: $(ls corpus/npy | wc -l) .npy files, $(ls corpus/manifest | wc -l) manifests"
