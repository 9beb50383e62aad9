"""Writes the large checkpoints of the checkpoint-reading benchmark (not committed) with the real
mmyolo models, saved the way users get them:

  rtmdet_l_mmyolo.pth          RTMDet-l (mmyolo 0.6.0 config) {meta, state_dict}, mmengine
                               save_checkpoint (torch zip format), ~200 MB
  rtmdet_l_mmyolo_legacy.pth   the same as mmdet's publish_model.py writes it (legacy format)
  kd_rtmdet_l_to_s.pth         a distillation-style file: {meta, state_dict} with the RTMDet-s
                               student under `architecture.` and the RTMDet-l teacher under
                               `teacher.` (how MMRazor's FpnTeacherDistill names them), ~245 MB

Weights are random (init_weights with a fixed seed): the benchmark measures reading, not accuracy.
Run: /work/main/.venv-fixtures/bin/python benches/python/make_big_checkpoint.py [--out DIR]
"""
import argparse
import os
import sys

os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'tests',
                                'fixtures', 'generate'))
import common  # noqa: E402  (fixture generator helpers: package paths, seeding)
import torch  # noqa: E402


def build(cfg_rel):
    import mmyolo.utils
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    mmyolo.utils.register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(common.config_path(cfg_rel))
    cfg.model.backbone.init_cfg = None  # no download of ImageNet-pretrained weights
    with DefaultScope.overwrite_default_scope('mmyolo'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return cfg, model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='/tmp/mmcompat-bench')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    import mmengine
    from mmengine.runner import save_checkpoint
    common.seed_everything(0)
    cfg_l, model_l = build('mmyolo::rtmdet/rtmdet_l_syncbn_fast_8xb32-300e_coco.py')
    meta = dict(mmengine_version=mmengine.__version__, dataset_meta=common.coco_dataset_meta(),
                cfg=cfg_l.pretty_text, epoch=300, iter=1099800)
    sd_l = model_l.state_dict()
    p = os.path.join(args.out, 'rtmdet_l_mmyolo.pth')
    save_checkpoint(dict(meta=meta, state_dict=sd_l), p)
    print(p, os.path.getsize(p))
    p = os.path.join(args.out, 'rtmdet_l_mmyolo_legacy.pth')
    torch.save(dict(meta=meta, state_dict=sd_l), p, _use_new_zipfile_serialization=False)
    print(p, os.path.getsize(p))
    _, model_s = build('mmyolo::rtmdet/rtmdet_s_syncbn_fast_8xb32-300e_coco.py')
    kd = {f'architecture.{k}': v for k, v in model_s.state_dict().items()}
    kd.update({f'teacher.{k}': v for k, v in sd_l.items()})
    p = os.path.join(args.out, 'kd_rtmdet_l_to_s.pth')
    save_checkpoint(dict(meta=meta, state_dict=kd), p)
    print(p, os.path.getsize(p))


if __name__ == '__main__':
    main()
