"""Loads a file written by mmcompat's checkpoint writer with the real torch and prints, as one
JSON object, what torch sees: for `.pth`, `torch.load(path, weights_only=True)` (the default since
torch 2.6; no TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD) and mmengine's `load_checkpoint(..., strict=True)`
into a module with exactly those buffers; for `.safetensors`, the header parsed by hand and the
bytes read with `torch.frombuffer` (the venv has no `safetensors` package).

Used by registry/tests/checkpoint/writers.rs (written_files_load_in_real_torch) and to make the committed
checkpoints/written_by_mmcompat.*.torch.json.
Run: /work/main/.venv-fixtures/bin/python registry/tests/data/verify_written.py FILE
"""
import json
import os
import sys

os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
import torch  # noqa: E402

ST_DTYPES = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'F64': torch.float64,
             'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8,
             'U8': torch.uint8, 'BOOL': torch.bool}


def describe(tensors):
    out = {}
    for name, t in tensors.items():
        flat = t.detach().flatten()
        values = flat.tolist() if t.dtype == torch.bool or not t.dtype.is_floating_point else flat.double().tolist()
        out[name] = {'dtype': str(t.dtype).replace('torch.', ''), 'shape': list(t.shape), 'values': values}
    return out


def module_with_buffers(state_dict):
    root = torch.nn.Module()
    for name, t in state_dict.items():
        *path, leaf = name.split('.')
        m = root
        for p in path:
            if not hasattr(m, p):
                m.add_module(p, torch.nn.Module())
            m = getattr(m, p)
        m.register_buffer(leaf, torch.zeros_like(t))
    return root


def main(path):
    if path.endswith('.safetensors'):
        raw = open(path, 'rb').read()
        n = int.from_bytes(raw[:8], 'little')
        header = json.loads(raw[8:8 + n])
        metadata = header.pop('__metadata__', {})
        tensors = {}
        for name, info in header.items():
            s, e = info['data_offsets']
            dt = ST_DTYPES[info['dtype']]
            buf = bytearray(raw[8 + n + s:8 + n + e])
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
            tensors[name] = t.reshape(info['shape'])
        print(json.dumps({'metadata': metadata, 'tensors': describe(tensors)}))
        return
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    from mmengine.runner.checkpoint import load_checkpoint
    model = module_with_buffers(ckpt['state_dict'])
    load_checkpoint(model, path, map_location='cpu', strict=True)
    same = all(torch.equal(model.get_buffer(k), v) for k, v in ckpt['state_dict'].items())
    print(json.dumps({
        'top_level_keys': list(ckpt.keys()),
        'state_dict_type': type(ckpt['state_dict']).__name__,
        'meta': ckpt['meta'],
        'tensors': describe(ckpt['state_dict']),
        'mmengine_load_checkpoint_equal': same,
    }))


if __name__ == '__main__':
    main(sys.argv[1])
