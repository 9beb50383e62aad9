# The two commands a user types on a fresh machine are `make demo` and `make test` (see README.md).
# Everything they need is installed by the scripts they call: libtorch from the PyPI torch==2.11.0
# wheel (scripts/setup-libtorch.sh) and the upstream config trees for the corpus test
# (scripts/fetch-config-trees.sh). Both are idempotent.

CARGO ?= cargo
DEMO_IMAGE ?= tests/fixtures/inference/images/astronaut.png
DEMO_OUT ?= out/demo

.PHONY: setup demo test fixtures bench fmt lint

setup:
	./scripts/setup-libtorch.sh
	./scripts/fetch-config-trees.sh
	./scripts/install-fixture-configs.sh

demo: setup
	$(CARGO) run --quiet -- detect \
	  --config .cache/fixture-configs/mmyolo/mmcompat/kd_nano_rtmdet_neck.py \
	  --weights tests/fixtures/checkpoints/kd_nano_rtmdet_neck.pth \
	  --config-root mmyolo=.cache/fixture-configs/mmyolo \
	  --config-root mmdet=.cache/fixture-configs/mmdet \
	  --config-root mmrazor=.cache/fixture-configs/mmrazor \
	  --scope mmyolo --device cpu --score-thr 0.3 --out-dir $(DEMO_OUT) --json $(DEMO_IMAGE)
	@echo "annotated image(s) written to $(DEMO_OUT)/"

test: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	INSTA_UPDATE=no $(CARGO) test --workspace

fixtures:
	./tests/fixtures/generate/generate_all.sh

bench: setup
	./benches/bench_all.sh

fmt:
	$(CARGO) fmt --all
