"""Makes the small checkpoints of registry/tests/checkpoint/ with the real torch, and what torch
sees in them (checkpoints/expected.json).

Covers every dtype the reader supports, views (storage offset, strides, transposed, expanded),
storages shared between tensors and between sections, a Parameter, a scalar and an empty tensor,
an OrderedDict with `_metadata`, numpy scalars/arrays, bytes, a set, a defaultdict and a big int
in `meta`, saved three ways: zip (default), legacy (`_use_new_zipfile_serialization=False`, as
mmdet's publish_model.py) and zip with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, ...).

Run: /work/main/.venv-fixtures/bin/python registry/tests/data/make_test_checkpoints.py
"""
import collections
import json
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'checkpoints')


def build():
    g = torch.Generator().manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) * 0.5 - 3
    sd = collections.OrderedDict()
    sd['backbone.f32'] = torch.randn(2, 3, generator=g)
    sd['backbone.f16'] = torch.randn(3, generator=g).half()
    sd['backbone.bf16'] = torch.randn(3, generator=g).bfloat16()
    sd['backbone.f64'] = torch.randn(2, generator=g).double()
    sd['neck.i64'] = torch.tensor([-5, 0, 2**40])
    sd['neck.i32'] = torch.tensor([-7, 3], dtype=torch.int32)
    sd['neck.i16'] = torch.tensor([-300, 300], dtype=torch.int16)
    sd['neck.i8'] = torch.tensor([-128, 127], dtype=torch.int8)
    sd['neck.u8'] = torch.tensor([0, 255], dtype=torch.uint8)
    sd['neck.bool'] = torch.tensor([True, False, True])
    sd['head.scalar'] = torch.tensor(3.25)
    sd['head.empty'] = torch.zeros(0, 3)
    sd['views.base'] = base
    sd['views.transposed'] = base.t()
    sd['views.window'] = base[1:3, 2:5]
    sd['views.flat_slice'] = base.view(24)[5:11]
    sd['views.expanded'] = torch.tensor([1.5, -2.0]).unsqueeze(0).expand(3, 2)
    sd['views.half_window'] = torch.arange(12, dtype=torch.float16).reshape(3, 4)[:, 1::2]
    sd['param'] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd._metadata = collections.OrderedDict([('', {'version': 1}), ('backbone', {'version': 2})])
    ema = collections.OrderedDict()
    ema['module.views.base'] = base  # same storage as state_dict's views.* tensors
    ema['steps'] = torch.tensor(4, dtype=torch.int64)
    meta = {
        'epoch': 3,
        'iter': 120,
        'dataset_meta': {'classes': ('person', 'bicycle', 'car'), 'palette': [(220, 20, 60), (119, 11, 32), (0, 0, 142)]},
        'np_f64': np.float64(0.5),
        'np_f32': np.float32(1.5),
        'np_i64': np.int64(-7),
        'np_arr': np.arange(4, dtype=np.float64).reshape(2, 2) / 4,
        'bytes': b'\x00\xffab',
        'set': {5},
        'big': 2**70,
        'negative': -2**40,
        'small_float': 1e-3,
        'none': None,
        'mmengine_version': '0.10.7',
    }
    extras = {
        'dd': collections.defaultdict(list, {'x': [1, 2]}),
        'int_keys': {0: 'zero', 7: 'seven'},
    }
    optimizer = {'state': {0: {'step': torch.tensor(2.0), 'exp_avg': torch.ones(2)}},
                 'param_groups': [{'lr': 0.01, 'params': [0]}]}
    return {'meta': meta, 'state_dict': sd, 'ema_state_dict': ema, 'optimizer': optimizer,
            'extras': extras}


def tensor_entries(obj, prefix=''):
    """Tensor leaves with dotted paths, as tests/fixtures/generate/make_checkpoints.py walks them."""
    out = []
    if isinstance(obj, torch.Tensor):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(tensor_entries(v, f'{prefix}.{k}' if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.extend(tensor_entries(v, f'{prefix}.{i}' if prefix else str(i)))
    return out


def jsonlike(obj):
    """The documented JSON-like view (registry/src/checkpoint/value.rs: Value::to_json)."""
    if isinstance(obj, dict):
        return {str(k): jsonlike(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonlike(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return obj if -2**63 <= obj < 2**63 else str(obj)
    if isinstance(obj, float):
        return obj
    if isinstance(obj, bytes):
        return {'__bytes__': obj.hex()}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return {'__class__': 'numpy.ndarray', 'dtype': str(obj.dtype), 'shape': list(obj.shape),
                'data': obj.ravel().tolist()}
    raise TypeError(type(obj))


def describe(obj):
    entries = tensor_entries({k: v for k, v in obj.items()})
    ptr_group = {}
    tensors = []
    for name, t in entries:
        ptr = t.untyped_storage().data_ptr()
        group = ptr_group.setdefault(ptr, name)
        values = t.detach().flatten()
        values = values.tolist() if t.dtype == torch.bool else (
            values.double().tolist() if t.dtype.is_floating_point else values.tolist())
        tensors.append({
            'name': name,
            'dtype': str(t.dtype).replace('torch.', ''),
            'shape': list(t.shape),
            'stride': list(t.stride()),
            'storage_offset': t.storage_offset(),
            'storage_group': group,
            'storage_nbytes': t.untyped_storage().nbytes(),
            'values': values,
        })
    return {
        'top_level_keys': list(obj.keys()),
        'state_dict_keys': list(obj['state_dict'].keys()),
        'state_dict_metadata': jsonlike(obj['state_dict']._metadata),
        'meta': jsonlike(obj['meta']),
        'extras': {'dd_items': jsonlike(dict(obj['extras']['dd'])), 'int_keys': jsonlike(obj['extras']['int_keys'])},
        'tensors': tensors,
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    obj = build()
    files = {
        'torch_zip.pth': dict(),
        'torch_legacy.pth': dict(_use_new_zipfile_serialization=False),
        'torch_zip_proto4.pth': dict(pickle_protocol=4),
    }
    expected = {'torch_version': torch.__version__, 'numpy_version': np.__version__, 'files': {}}
    for name, kwargs in files.items():
        path = os.path.join(OUT, name)
        torch.save(obj, path, **kwargs)
        loaded = torch.load(path, map_location='cpu', weights_only=False)
        expected['files'][name] = describe(loaded)
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, indent=1)
        f.write('\n')
    for name in files:
        print(name, os.path.getsize(os.path.join(OUT, name)), 'bytes')


if __name__ == '__main__':
    main()
