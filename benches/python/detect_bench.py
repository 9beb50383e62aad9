"""Python side of the detection benchmark (BENCHMARKS.md "## Detection", benches/bench_detect.sh).

Modes (one JSON line on stdout each; wall times in seconds, peak RSS in MiB):

* ``cold CONFIG CKPT IMAGE``: what a user script does: import mmdet/mmyolo, ``init_detector`` and
  one ``inference_detector``. ``t_*`` fields are measured inside the process from its start
  (``/proc/self/stat`` start time), so interpreter start-up is included.
* ``steady CONFIG CKPT IMAGE [N]``: after the model is loaded and 3 warm-up runs,
  ``inference_detector`` on the decoded image N times (default 30); median and mean.
* ``kd KD_CONFIG KD_CKPT IMAGE``: ``DetInferencer(model=KD_CONFIG, weights=KD_CKPT, scope='mmyolo')``
  with ``model.teacher_ckpt=None`` (the only way it runs offline: the shipped value is a URL), then one
  call; the teacher IS built, as upstream does.

Needs the fixture venv (.venv-fixtures) after ``tests/fixtures/generate/shims.py install`` (mmcv's
compiled ops are replaced by the shim's NMS) and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.
"""
import json
import os
import resource
import sys
import time
import types


def since_process_start():
    """Seconds since this process was started (kernel start time, so imports are included)."""
    with open('/proc/self/stat') as f:
        start_ticks = int(f.read().rsplit(')', 1)[1].split()[19])
    with open('/proc/uptime') as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf('SC_CLK_TCK')


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _six():
    try:  # mmdet/models/utils/misc.py imports six.moves; the venv may not ship six.
        import six  # noqa: F401
    except ImportError:
        six = types.ModuleType('six')
        six.moves = types.ModuleType('six.moves')
        six.moves.map, six.moves.zip = map, zip
        sys.modules['six'] = six
        sys.modules['six.moves'] = six.moves


def load(config, ckpt):
    _six()
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    from mmdet.apis import init_detector
    from mmdet.utils import register_all_modules as det_modules
    from mmyolo.utils import register_all_modules as yolo_modules
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if 'roi_head' in cfg.model:
        # mmcv-lite has no RoIAlign kernel: torchvision's (C++, same semantics for aligned avg
        # pooling), as the fixture generator uses (tests/fixtures/generate/make_faster_rcnn_refs.py).
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tests',
                                        'fixtures', 'generate'))
        from make_faster_rcnn_refs import install_roi_align
        install_roi_align()
    if cfg.get('default_scope') == 'mmyolo':
        yolo_modules()
    else:
        det_modules()
    # cfg_options={} as mmyolo's demo/image_demo.py does (init_detector's None path needs
    # model.backbone).
    return init_detector(cfg, ckpt, device='cpu', cfg_options={})


def cold(config, ckpt, image):
    t_start = since_process_start()
    import cv2
    from mmdet.apis import inference_detector
    t_imported = since_process_start()
    model = load(config, ckpt)
    t_loaded = since_process_start()
    img = cv2.imread(image)
    result = inference_detector(model, img)
    t_done = since_process_start()
    return dict(mode='cold', t_interpreter=t_start, t_imports=t_imported, t_model=t_loaded,
                t_first_detection=t_done, detections=len(result.pred_instances),
                peak_rss_mib=peak_rss_mib())


def _timed(obj, name, store):
    """Wraps obj.name to record its wall time per call."""
    f = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = f(*args, **kwargs)
        store.append(time.perf_counter() - t)
        return out

    setattr(obj, name, wrapper)


def steady(config, ckpt, image, n=30):
    import cv2
    import torch
    from mmdet.apis import inference_detector
    model = load(config, ckpt)
    img = cv2.imread(image)
    for _ in range(3):
        inference_detector(model, img)
    # Split of each call: backbone+neck, head forward, predict_by_feat (post-processing).
    feat_t, head_t, post_t, roi_t = [], [], [], []
    det = getattr(model, 'architecture', model)  # an MMRazor distiller predicts with its student
    _timed(det, 'extract_feat', feat_t)
    if hasattr(det, 'roi_head'):
        # Two-stage (mmdet TwoStageDetector): the RPN's and the box head's forward and the RoI
        # extractor (RoIAlign) are network forward; the RPN's proposals and the box head's
        # decode + NMS are post-processing (the split examples/detect_distilled.rs reports).
        _timed(det.rpn_head, 'forward', head_t)
        _timed(det.roi_head.bbox_roi_extractor, 'forward', roi_t)
        _timed(det.roi_head.bbox_head, 'forward', head_t)
        _timed(det.rpn_head, 'predict_by_feat', post_t)
        _timed(det.roi_head.bbox_head, 'predict_by_feat', post_t)
    else:
        _timed(det.bbox_head, 'forward', head_t)
        _timed(det.bbox_head, 'predict_by_feat', post_t)
    times = []
    with torch.no_grad():
        for _ in range(n):
            t = time.perf_counter()
            result = inference_detector(model, img)
            times.append(time.perf_counter() - t)
    times.sort()

    def med(v):
        return sorted(v)[len(v) // 2] * 1e3 if v else None

    # Per call: sum the timed pieces (two-stage models time several per call).
    k_head = len(head_t) // max(len(feat_t), 1)
    k_post = len(post_t) // max(len(feat_t), 1)
    head_c = [sum(head_t[i * k_head:(i + 1) * k_head]) for i in range(len(feat_t))]
    if roi_t:  # the RoI extractor (RoIAlign) is forward too; reported alone as well
        head_c = [h + r for h, r in zip(head_c, roi_t)]
    post_c = [sum(post_t[i * k_post:(i + 1) * k_post]) for i in range(len(feat_t))]
    return dict(mode='steady', median_ms=times[len(times) // 2] * 1e3,
                forward_median_ms=med([a + b for a, b in zip(feat_t, head_c)]),
                postprocess_median_ms=med(post_c), roi_align_median_ms=med(roi_t),
                mean_ms=sum(times) / len(times) * 1e3, runs=n, threads=torch.get_num_threads(),
                detections=len(result.pred_instances), peak_rss_mib=peak_rss_mib())


def kd(config, ckpt, image):
    _six()
    os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    from mmdet.apis import DetInferencer
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.model.teacher_ckpt = None
    t0 = since_process_start()
    inferencer = DetInferencer(model=cfg, weights=ckpt, scope='mmyolo', device='cpu',
                               show_progress=False)
    t_loaded = since_process_start()
    out = inferencer(image, return_vis=False, no_save_pred=True)
    t_done = since_process_start()
    return dict(mode='kd', t_imports=t0, t_model=t_loaded, t_first_detection=t_done,
                detections=len(out['predictions'][0]['scores']), peak_rss_mib=peak_rss_mib())


def main():
    mode, *args = sys.argv[1:]
    if mode == 'cold':
        out = cold(*args[:3])
    elif mode == 'steady':
        out = steady(args[0], args[1], args[2], int(args[3]) if len(args) > 3 else 30)
    elif mode == 'kd':
        out = kd(*args[:3])
    else:
        raise SystemExit(f'unknown mode {mode}')
    print(json.dumps(out))


if __name__ == '__main__':
    main()
