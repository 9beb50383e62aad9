"""Writes full-size (ResNet-50) mmdet checkpoints for the mmdet rows of BENCHMARKS.md "## Families"
and the full-size check of issue 14 (check_r50.py): the shipped configs as they are, built by the
real mmdet 3.3.0, default init, BN affine perturbed and BN statistics re-estimated on the fixture
photographs (make_checkpoints.py's recipe), the classifiers' biases raised so that scores pass
`score_thr` on some priors as a trained model's do (default init: none would), saved in
mmengine's layout with COCO's dataset_meta. Not committed (~150 MB each): generated on demand
into .cache/bench-r50/ by benches/bench_families.sh, or by hand:

    .venv-fixtures/bin/python benches/python/make_r50_checkpoints.py [NAME ...]

NAME: retinanet_r50, gfl_r50, faster_rcnn_r50, reppoints_r50 (default: all). Prints `<name> <config> <ckpt>`.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, 'tests', 'fixtures', 'generate'))
sys.dont_write_bytecode = True

import common  # noqa: E402  (sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD before torch is imported)

import torch  # noqa: E402

from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402

from make_checkpoints import (build_model, load_cfg, perturb, plain_checkpoint,  # noqa: E402
                              preprocess, register_all)

CASES = {
    'retinanet_r50': 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    'gfl_r50': 'mmdet::gfl/gfl_r50_fpn_1x_coco.py',
    'faster_rcnn_r50': 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'reppoints_r50': 'mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py',
}
OUT = os.path.join(REPO, '.cache', 'bench-r50')
SEED = 50


def reestimate_backbone_bn(model, inputs):
    """One train-mode pass of the backbone with cumulative-average BN (the R50 detectors have BN
    in the backbone only)."""
    bns = [m for m in model.backbone.modules() if isinstance(m, _BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.backbone.train()
    with torch.no_grad():
        model.backbone(inputs)
    for m in bns:
        m.momentum = 0.1
    model.eval()


def raise_class_scores(model):
    """Sigmoid classifiers: prior bias -4.6 -> -1.6; the softmax box head: background -3 (then
    calibrated)."""
    with torch.no_grad():
        for name in ('bbox_head.retina_cls', 'bbox_head.gfl_cls', 'rpn_head.rpn_cls',
                     'bbox_head.reppoints_cls_out'):
            m = model
            for part in name.split('.'):
                m = getattr(m, part, None)
            if m is not None:
                m.bias.add_(3.0)
        if hasattr(model, 'roi_head'):
            model.roi_head.bbox_head.fc_cls.bias[-1] -= 3.0


def main(names):
    register_all()
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        cfg_name = CASES[name]
        path = os.path.join(OUT, name + '.pth')
        cfg = load_cfg(cfg_name)
        if not os.path.exists(path):
            common.seed_everything(SEED)
            # `init_cfg` would fetch the torchvision ImageNet weights (no network here): off.
            cfg.model.backbone.init_cfg = None
            model = build_model(cfg, 'mmdet')
            model.init_weights()
            perturb(model, SEED)
            photos = list(common.photographs().values())
            inputs, samples = preprocess(cfg, model, 'mmdet', photos)
            reestimate_backbone_bn(model, inputs)
            raise_class_scores(model)
            if hasattr(model, 'roi_head'):
                # Logits of spread 1.5 on the photographs: scores below 1.0, no ties (as the
                # committed fixture, make_faster_rcnn_refs.py).
                from make_faster_rcnn_refs import calibrate_predictions
                calibrate_predictions(model, inputs, samples)
            model.eval()
            torch.save(plain_checkpoint(cfg, model, SEED), path)
        print(name, common.config_path(cfg_name), path)


if __name__ == '__main__':
    main(sys.argv[1:] or list(CASES))
