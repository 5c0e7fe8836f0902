"""Reads a bridge-ebm model with numpy exactly as the safetensors reference loader does, and
checks the format's rules: 8-byte aligned header, contiguous offsets in order, dtypes numpy knows,
metadata strings, and that the tensors match the ebm.layers list."""
import json
import struct
import sys

import numpy as np

path = sys.argv[1]
data = open(path, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
assert n % 8 == 0, f"header length {n} is not a multiple of 8"
header = json.loads(data[8 : 8 + n])
meta = header.pop("__metadata__")
assert all(isinstance(v, str) for v in meta.values())
assert meta["ebm.format"] == "1"
body = data[8 + n :]
dtypes = {"F16": np.float16, "F32": np.float32}
tensors = {}
end = 0
for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    begin, stop = info["data_offsets"]
    assert begin == end, f"{name} does not follow the previous tensor"
    arr = np.frombuffer(body[begin:stop], dtype=np.dtype(dtypes[info["dtype"]]).newbyteorder("<"))
    tensors[name] = arr.reshape(info["shape"]).astype(np.float32)
    assert np.all(np.isfinite(tensors[name])), name
    end = stop
assert end == len(body), "trailing bytes"
layers = json.loads(meta["ebm.layers"])
used = {t for layer in layers for t in layer.get("tensors", {}).values()}
assert used == set(tensors), f"tensors {set(tensors) ^ used} disagree with ebm.layers"
conv0 = tensors[layers[0]["tensors"]["weight"]]
assert conv0.shape == (layers[0]["out_channels"], layers[0]["in_channels"], *layers[0]["kernel"])
print(f"{path}: {len(tensors)} tensors, {sum(t.size for t in tensors.values())} parameters, "
      f"dtype {header[next(iter(header))]['dtype']}, ok")
