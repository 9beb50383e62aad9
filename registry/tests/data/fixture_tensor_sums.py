"""What torch reads from the generator's checkpoint fixtures (tests/fixtures/checkpoints/*.pth):
for every tensor of `state_dict`, its float64 sum, sum of absolute values and first element; for
`ema_state_dict`, the section totals. The legacy file holds the mmdet file's tensors (the test
checks it against those rows). Written to checkpoints/fixture_sums.json for registry/tests/checkpoint/fixtures.rs.

Run: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/main/.venv-fixtures/bin/python \
     registry/tests/data/fixture_tensor_sums.py
"""
import json
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, '..', '..', '..', 'tests', 'fixtures', 'checkpoints')
NAMES = ['rtmdet_nano_mmyolo.pth', 'rtmdet_nano_mmdet.pth', 'kd_nano_rtmdet_neck.pth']


def main():
    out = {'torch_version': torch.__version__, 'files': {}}
    for name in NAMES:
        ckpt = torch.load(os.path.join(FIXTURES, name), map_location='cpu', weights_only=False)
        rows = {}
        for k, t in ckpt['state_dict'].items():
            d = t.detach().double().flatten()
            rows[k] = [d.sum().item(), d.abs().sum().item(), d[0].item() if d.numel() else None]
        entry = {'state_dict': rows}
        if 'ema_state_dict' in ckpt:
            ts = [t.detach().double().flatten() for t in ckpt['ema_state_dict'].values()]
            entry['ema_state_dict_totals'] = [sum(t.sum().item() for t in ts),
                                              sum(t.abs().sum().item() for t in ts)]
        out['files'][name] = entry
    with open(os.path.join(HERE, 'checkpoints', 'fixture_sums.json'), 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main()
