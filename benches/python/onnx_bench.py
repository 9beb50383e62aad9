"""ONNX Runtime side of BENCHMARKS.md "## ONNX export" (benches/bench_onnx.sh).

``onnx_bench.py DIR`` runs DIR/mmyolo.onnx (raw head outputs) and DIR/mmyolo_end2end.onnx (decoding +
NMS in the graph), both written by mmcompat's exporter, with onnxruntime on the CPU (2 intra-op
threads, as the tch and Python sides), on the astronaut fixture's network input normalised as the
.preprocess.json says: median of 30 runs after 3 warm-up runs. One JSON line on stdout.
"""
import json
import os
import statistics
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = os.path.join(HERE, '..', '..', 'tests', 'fixtures', 'inference', 'mmyolo__astronaut.input.png')


def main(dir_, n=30):
    out = {'onnxruntime': ort.__version__, 'threads': 2, 'runs': n}
    for stem in ['mmyolo', 'mmyolo_end2end']:
        pre = json.load(open(os.path.join(dir_, stem + '.preprocess.json')))
        img = cv2.imread(INPUT, cv2.IMREAD_COLOR)
        if pre['channel_order'] == 'RGB':
            img = img[:, :, ::-1]
        x = (img.astype(np.float32) - np.array(pre['normalize']['mean'], np.float32)) / np.array(
            pre['normalize']['std'], np.float32)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(os.path.join(dir_, stem + '.onnx'), so,
                                    providers=['CPUExecutionProvider'])
        for _ in range(3):
            sess.run(None, {'input': x})
        ms = []
        for _ in range(n):
            t = time.perf_counter()
            sess.run(None, {'input': x})
            ms.append((time.perf_counter() - t) * 1e3)
        out[stem + '_median_ms'] = round(statistics.median(ms), 3)
    print(json.dumps(out))


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
