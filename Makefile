# The two commands a user types on a fresh machine are `make demo` and `make test` (see README.md).
# Everything they need is installed by the scripts they call: libtorch from the PyPI torch==2.11.0
# wheel (scripts/setup-libtorch.sh) and the upstream config trees for the corpus test
# (scripts/fetch-config-trees.sh). Both are idempotent.

CARGO ?= cargo
# The bundled demo (issue 17): an RTMDet-tiny student distilled by MMRazor from an RTMDet-s teacher,
# trained on shapes scenes (tests/fixtures/demo/README.md), run on sample scenes training never saw.
DEMO_SCENES ?= tests/fixtures/demo/scenes
DEMO_SCORE_THR ?= 0.5
DEMO_OUT ?= out/demo

.PHONY: setup demo test test-python fixtures bench fmt lint

setup:
	./scripts/setup-libtorch.sh
	./scripts/fetch-config-trees.sh
	./scripts/install-fixture-configs.sh

demo: setup
	$(CARGO) run --quiet -- detect \
	  --config .cache/fixture-configs/mmyolo/mmcompat/demo_shapes_kd_rtmdet.py \
	  --weights tests/fixtures/demo/demo_shapes_kd_rtmdet.pth \
	  --config-root mmyolo=.cache/fixture-configs/mmyolo \
	  --config-root mmdet=.cache/fixture-configs/mmdet \
	  --config-root mmrazor=.cache/fixture-configs/mmrazor \
	  --scope mmyolo --device cpu --score-thr $(DEMO_SCORE_THR) \
	  --ground-truth $(DEMO_SCENES)/gt.json \
	  --out-dir $(DEMO_OUT) --output $(DEMO_OUT)/detections.jsonl $(DEMO_SCENES)
	@echo "annotated images and detections.jsonl written to $(DEMO_OUT)/"

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	INSTA_UPDATE=no $(CARGO) test --workspace
	$(MAKE) test-python

# The Python package (bindings/): wheel built with maturin on the artifacts `cargo test
# --workspace` left in target/, installed into target/pyvenv next to the torch of .libtorch/, pytest.
test-python: setup
	CARGO=$(CARGO) ./scripts/test-python.sh

fixtures:
	./tests/fixtures/generate/generate_all.sh

bench: setup
	./benches/bench_all.sh

fmt:
	$(CARGO) fmt --all
