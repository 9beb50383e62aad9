# mmcompat benchmark config: the fixture RTMDet nano (tests/fixtures/configs/overlay) with a test
# pipeline that resizes to 64x64, so that one image costs milliseconds and a run over 100,000
# images measures the batch loop (decode, records, memory), not the network. Used by
# benches/batch_rss.sh; loads in mmengine too (`mmyolo::` resolves through the fixture overlay).
_base_ = 'mmyolo::mmcompat/rtmdet_nano_mmyolo.py'

img_scale = (64, 64)  # width, height

test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='YOLOv5KeepRatioResize', scale=img_scale),
    dict(
        type='LetterResize',
        scale=img_scale,
        allow_scale_up=False,
        pad_val=dict(img=114)),
    dict(type='LoadAnnotations', with_bbox=True, _scope_='mmdet'),
    dict(
        type='mmdet.PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'pad_param'))
]

test_dataloader = dict(dataset=dict(pipeline=test_pipeline, batch_shapes_cfg=None))

# Few candidates into NMS (the untrained fixture model scores hundreds of boxes just above the
# shipped score_thr=0.001): the benchmark is about the batch loop, and records stay short.
model = dict(test_cfg=dict(score_thr=0.3, nms_pre=100, max_per_img=10))
