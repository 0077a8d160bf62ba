# Two commands: `make demo` and `make test`. Both create .venv and install what is missing.
# `make results` re-measures the README's results (demo JSON, benchmarks) and regenerates its tables;
# `make compression` retrains the compression/distillation/search students (about 70 min on 2 cores) and measures them,
# quantizes the shipped exact checkpoints after training (benchmarks/quantize.sh), and trains [7 of 7]'s
# class-incremental models (benchmarks/tasks.sh) and supernets (benchmarks/supernet.sh).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test results compression install clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/secvit demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)

CHECKPOINTS := vit_lite_7_4_32-digits vit_lite_7_4_32-digits-mpcformer vit_lite_7_4_32-digits-mpcvit vit_lite_3_4_32-digits-lean
FASHION := vit_lite_6_4_28-fashion vit_lite_6_4_28-fashion-lean
HOLO := vit_lite_2_2_32-holo

results: $(STAMP)
	$(BIN)/secvit demo --json benchmarks/results/demo.json
	for c in $(CHECKPOINTS); do $(BIN)/secvit check --checkpoint checkpoints/$$c --n 360 --mpc-n 16 --json benchmarks/results/check_$$c.json; done
	for c in $(FASHION); do $(BIN)/secvit check --checkpoint checkpoints/$$c --n 10000 --mpc-n 1000 --batch-size 16 \
	  --json benchmarks/results/fashion_$$c.json; done
	for c in vit_lite_7_4_32-digits vit_lite_7_4_32-digits-mpcformer vit_lite_3_4_32-digits-lean; do $(BIN)/secvit check --checkpoint checkpoints/$$c --split augmented --n 2000 --mpc-n 2000 --batch-size 16 --json benchmarks/results/mpc2000_$$c.json; done
	mkdir -p benchmarks/results/precision benchmarks/results/tasks
	for c in $(CHECKPOINTS); do $(BIN)/secvit precision --checkpoint checkpoints/$$c --bits 10,12,14,16 --n 360 --mpc-n 16 \
	  --json benchmarks/results/precision/$$c.json; done
	for c in $(FASHION); do $(BIN)/secvit precision --checkpoint checkpoints/$$c \
	  --bits $$([ $$c = vit_lite_6_4_28-fashion ] && echo 12,14,16,18 || echo 10,12,14,16) --n 10000 --mpc-n 64 \
	  --batch-size 16 --json benchmarks/results/precision/$$c.json; done
	$(BIN)/secvit check --checkpoint checkpoints/$(HOLO) --n 1000 --mpc-n 100 --batch-size 16 \
	  --json benchmarks/results/tasks/holo_check.json
	$(BIN)/python -m pytest benchmarks/test_dealer.py -q -m slow --benchmark-json=benchmarks/results/dealer.json
	$(BIN)/python -m pytest benchmarks/test_secure_forward.py -q -m slow -k "not targets" --benchmark-json=benchmarks/results/secure_forward.json
	$(BIN)/python -m pytest benchmarks/test_secure_forward.py -q -m slow -k targets --benchmark-json=benchmarks/results/targets_dealer.json
	$(BIN)/python -m pytest benchmarks/test_scale.py -q -m slow --benchmark-json=benchmarks/results/scale.json
	$(BIN)/python -m pytest benchmarks/test_protocols.py -q -m slow --benchmark-json=benchmarks/results/protocols.json
	$(BIN)/python -m pytest benchmarks/test_model_policies.py -q -m slow --benchmark-json=benchmarks/results/model_policies.json
	$(BIN)/secvit pareto $(foreach c,$(CHECKPOINTS),checkpoints/$(c)) --names exact,mpcformer,mpcvit,lean --network wan \
	  --json benchmarks/results/pareto_shipped_wan.json --plot benchmarks/results/pareto_shipped_wan.png
	$(BIN)/secvit profile --n 4 --network wan --json benchmarks/results/profile_exact_wan.json --plot benchmarks/results/profile_exact_wan.png
	-for p in exact mpcformer; do c=checkpoints/vit_lite_7_4_32-digits$$([ $$p = exact ] || echo -$$p); \
	  $(BIN)/secvit profile --checkpoint $$c --n 1 --network wan --netem --json benchmarks/results/netem_$${p}_wan.json; \
	  $(BIN)/secvit profile --checkpoint $$c --n 1 --network wan --netem --insecure-tfp --insecure-local-truncation \
	    --json benchmarks/results/netem_$${p}_wan_tfp_local.json; done
	$(BIN)/secvit compare --policies exact,mpcformer,mpcvit,relu,linear --n 4 --network wan --json benchmarks/results/compare_wan.json --plot benchmarks/results/compare_wan.png
	$(BIN)/python benchmarks/readme_tables.py

compression: $(STAMP)
	BIN=$(BIN) bash benchmarks/compression.sh
	BIN=$(BIN) bash benchmarks/gqa_modes.sh
	BIN=$(BIN) bash benchmarks/quantize.sh
	BIN=$(BIN) bash benchmarks/tasks.sh
	BIN=$(BIN) bash benchmarks/supernet.sh
	$(BIN)/python benchmarks/readme_tables.py
