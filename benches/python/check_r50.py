"""The full-size (ResNet-50) mmdet case of issue 14, on demand (not in CI: ~150 MB checkpoints,
seconds per image): the shipped configs with the checkpoints make_r50_checkpoints.py writes,
the real `init_detector` + `inference_detector` against `mmcompat detect --json` on the fixture
photographs, matched as sets with the Rust tests' tolerances (same count, same labels, boxes
within 0.1 px, scores within 1e-4). With `--distill`, also every shipped MMRazor mmdet
distillation config whose student is one of these models: `mmcompat detect --config <distillation
config> --weights <plain student checkpoint>` must give the same detections (the student alone;
the teacher's config and checkpoint URL are never read).

    .venv-fixtures/bin/python benches/python/check_r50.py [--bin target/debug/mmcompat] [--distill] [NAME ...]

Prints one line per image and exits non-zero on any difference. mmcv-lite has no RoIAlign or
deformable-convolution kernel: Faster R-CNN's and RepPoints' references run with the torchvision
stand-ins of make_faster_rcnn_refs.py and make_fcos_reppoints_refs.py.
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
from make_fcos_reppoints_refs import install_deform_conv  # noqa: E402

IMAGES = ('astronaut', 'coffee')
# The student types of students.json (tests/fixtures/razor_mmdet) -> our R50 case.
STUDENT_CASE = {'RetinaNet': 'retinanet_r50', 'GFL': 'gfl_r50', 'FasterRCNN': 'faster_rcnn_r50',
                'RepPointsDetector': 'reppoints_r50'}


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
    ap.add_argument('--distill', action='store_true',
                    help="also the shipped MMRazor mmdet distillation configs of these models")
    ap.add_argument('names', nargs='*', default=list(r50.CASES))
    args = ap.parse_args()
    register_all()
    install_roi_align()
    install_deform_conv()
    torch.set_num_threads(1)
    from mmdet.apis import inference_detector, init_detector
    folder = os.path.join(common.INFERENCE, 'images')
    images = {i: os.path.join(folder, f'{i}.png') for i in IMAGES}
    roots = [f'--config-root={p}={os.path.join(common.package_dir(p), ".mim", "configs")}'
             for p in ('mmdet', 'mmyolo', 'mmrazor')]
    with open(os.path.join(common.FIXTURES, 'razor_mmdet', 'students.json')) as f:
        students = json.load(f)['students']
    razor = os.path.join(common.package_dir('mmrazor'), '.mim', 'configs')

    def detect(config, ckpt):
        out = subprocess.run([args.bin, 'detect', '--config', config, '--weights', ckpt, '--json',
                              *roots, *images.values()], capture_output=True, text=True,
                             check=True)
        return {os.path.basename(r['image']).split('.')[0]: r for r in
                map(json.loads, out.stdout.splitlines())}

    bad = 0
    for name in args.names:
        r50.main([name])
        cfg = common.config_path(r50.CASES[name])
        ckpt = os.path.join(r50.OUT, name + '.pth')
        model = init_detector(cfg, ckpt, device='cpu')
        runs = {name: detect(cfg, ckpt)}
        if args.distill:
            for rel, want in sorted(students.items()):
                if STUDENT_CASE.get(want.get('built', {}).get('type')) == name:
                    runs[rel] = detect(os.path.join(razor, rel), ckpt)
        refs = {image: inference_detector(model, path).pred_instances
                for image, path in images.items()}
        for what, ours in runs.items():
            for image, det in refs.items():
                mine = [(d['bbox'], d['score'], d['label']) for d in ours[image]['detections']]
                found = match_count(mine, det.bboxes.tolist(), det.scores.tolist(),
                                    det.labels.tolist(), box_tol=0.1, score_tol=1e-4)
                ok = found == len(det.scores) == len(mine)
                bad += not ok
                print(f'{what} {image}: Python {len(det.scores)}, ours {len(mine)}, '
                      f'matched {found} -> {"OK" if ok else "DIFFERENT"}')
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
