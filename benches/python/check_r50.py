"""The full-size (ResNet-50) mmdet case of issue 14, on demand (not in CI: ~150 MB checkpoints,
seconds per image): the shipped configs with the checkpoints make_r50_checkpoints.py writes,
the real `init_detector` + `inference_detector` against `mmcompat detect --json` on the fixture
photographs, matched as sets with the Rust tests' tolerances (same count, same labels, boxes
within 0.1 px, scores within 1e-4).

    .venv-fixtures/bin/python benches/python/check_r50.py [--bin target/release/mmcompat] [NAME ...]

Prints one line per image and exits non-zero on any difference. mmcv-lite has no RoIAlign
kernel: Faster R-CNN's reference runs with the torchvision stand-in of make_faster_rcnn_refs.py.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'fixtures', 'generate'))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import common  # noqa: E402

import torch  # noqa: E402

import make_r50_checkpoints as r50  # noqa: E402
from make_checkpoints import register_all  # noqa: E402
from make_faster_rcnn_refs import install_roi_align  # noqa: E402

IMAGES = ('astronaut', 'coffee')


def match_count(ours, ref_bboxes, ref_scores, ref_labels, box_tol, score_tol):
    """How many reference detections have a distinct partner in ours (same label, score and box
    within the tolerances), as tests/inference.rs: assert_same_detections matches them."""
    used, found = set(), 0
    for b, s, l in zip(ref_bboxes, ref_scores, ref_labels):
        for i, (ob, os_, ol) in enumerate(ours):
            if i not in used and ol == l and abs(os_ - s) <= score_tol and \
                    all(abs(x - y) <= box_tol for x, y in zip(ob, b)):
                used.add(i)
                found += 1
                break
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--bin', default=os.path.join(REPO, 'target', 'release', 'mmcompat'))
    ap.add_argument('names', nargs='*', default=list(r50.CASES))
    args = ap.parse_args()
    register_all()
    install_roi_align()
    torch.set_num_threads(1)
    from mmdet.apis import inference_detector, init_detector
    folder = os.path.join(common.INFERENCE, 'images')
    images = {i: os.path.join(folder, f'{i}.png') for i in IMAGES}
    roots = [f'--config-root={p}={os.path.join(common.package_dir(p), ".mim", "configs")}'
             for p in ('mmdet', 'mmyolo', 'mmrazor')]
    bad = 0
    for name in args.names:
        r50.main([name])
        cfg = common.config_path(r50.CASES[name])
        ckpt = os.path.join(r50.OUT, name + '.pth')
        model = init_detector(cfg, ckpt, device='cpu')
        out = subprocess.run([args.bin, 'detect', '--config', cfg, '--weights', ckpt, '--json',
                              *roots, *images.values()], capture_output=True, text=True,
                             check=True)
        ours = {os.path.basename(r['image']).split('.')[0]: r for r in
                map(json.loads, out.stdout.splitlines())}
        for image, path in images.items():
            det = inference_detector(model, path).pred_instances
            mine = [(d['bbox'], d['score'], d['label']) for d in ours[image]['detections']]
            found = match_count(mine, det.bboxes.tolist(), det.scores.tolist(),
                                det.labels.tolist(), box_tol=0.1, score_tol=1e-4)
            ok = found == len(det.scores) == len(mine)
            bad += not ok
            print(f'{name} {image}: Python {len(det.scores)}, ours {len(mine)}, matched {found}'
                  f' -> {"OK" if ok else "DIFFERENT"}')
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
