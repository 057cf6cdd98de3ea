# gaze: every target is a one-line call of the `gaze` CLI, so anything here can also be done by hand.
# Paths come from gaze.toml / GAZE_* variables, or per call: make sdxl-standard DATASET=~/data MODEL=~/sdxl.safetensors

PYTHON ?= python3
VENV   ?= .venv
GAZE   := $(VENV)/bin/gaze
PIN    := $(shell sed -n 's/^tag = "\(.*\)"/\1/p' vendor/sd-scripts.pin)
REPO   := $(shell sed -n 's/^repository = "\(.*\)"/\1/p' vendor/sd-scripts.pin)
COMMIT := $(shell sed -n 's/^commit = "\(.*\)"/\1/p' vendor/sd-scripts.pin)

RECIPES := sdxl-standard sd15-standard sd15-uncropped sd15-smoke sdxl-smoke
GLITCHES := glitch-train-text-encoder glitch-uncropped glitch-no-bucket glitch-crop-flip glitch-high-lr \
            glitch-caption-dropout glitch-overtrain glitch-mismatched-base glitch-jpeg-inject
PATHS := $(if $(DATASET),--dataset $(DATASET)) $(if $(MODEL),--model $(MODEL))

.PHONY: setup setup-train setup-metrics metrics test lint vendor args-table recipes prep audit report generate generate-checkpoints \
        generate-glitch \
        sd-scripts demo compare queue sweep \
        $(RECIPES) $(GLITCHES)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

setup: $(VENV)/bin/python  ## install gaze and its test tools into .venv
	$(VENV)/bin/pip install -q -e '.[test]'

setup-train: $(VENV)/bin/python  ## also install what sd-scripts needs to train (torch, accelerate, ...)
	$(VENV)/bin/pip install -q -e '.[train,test]'

setup-metrics: setup-train  ## also install the image metrics that use model weights (open_clip, lpips, ...)
	$(VENV)/bin/pip install -q -e '.[train,test,metrics]'

metrics: setup  ## measure a run's images: make metrics RUN=runs/<recipe>/<time>-<id>
	$(GAZE) metrics $(RUN)

test: setup  ## the test suite (tests marked sd_scripts run only with SD_SCRIPTS_DIR set)
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check wrapper recipes tests bench
	$(VENV)/bin/lint-imports

vendor:  ## clone the pinned sd-scripts into vendor/sd-scripts (needs internet)
	test -d vendor/sd-scripts || git clone --quiet --branch $(PIN) --depth 1 $(REPO) vendor/sd-scripts
	test "$$(git -C vendor/sd-scripts rev-parse HEAD)" = "$(COMMIT)"

args-table: setup-train  ## regenerate wrapper/kohya/sd_scripts_args.json from the checkout
	$(VENV)/bin/python -m wrapper.kohya.interface

recipes: setup
	$(GAZE) recipes

prep: setup  ## crop DATASET to 832x1216 / 1216x832 into the cache: make prep DATASET=~/data
	$(GAZE) prep $(DATASET) --op crop-orientation

audit: setup  ## check images, captions, CLIP token lengths: make audit DATASET=~/data RESOLUTION=832x1216
	$(GAZE) audit $(DATASET) $(if $(RESOLUTION),--resolution $(RESOLUTION))

report: setup  ## make report RUN=runs/sd15-standard/<time>-<id>
	$(GAZE) report $(RUN)

generate: setup-train  ## the log's sweep over a run's final LoRA: make generate RUN=runs/<recipe>/<time>-<id>
	$(GAZE) generate $(RUN) --grid sampler=dpm++2m,euler steps=10,20,40 cfg=3,7,12 negative=on,off weight=0.6,1.0 --seeds 1,2 --yes

generate-checkpoints: setup-train  ## the same prompts across every saved checkpoint of RUN
	$(GAZE) generate $(RUN) --checkpoint all --grid negative=on,off

generate-glitch: setup-train  ## the research log's generation-glitch preset on RUN's final LoRA: make generate-glitch RUN=...
	$(GAZE) generate $(RUN) --glitch --yes

sd-scripts:  ## find (or clone) the pinned sd-scripts before anything heavy is installed
	@test -n "$$SD_SCRIPTS_DIR" || test -d vendor/sd-scripts || $(MAKE) --no-print-directory vendor || { \
	  echo "No sd-scripts checkout: set SD_SCRIPTS_DIR to a checkout of $(PIN) (commit $(COMMIT)),"; \
	  echo "or on a machine with internet: git clone --branch $(PIN) $(REPO) vendor/sd-scripts"; exit 1; }

demo: sd-scripts setup-train  ## the whole job offline: random-weight SD1.5, synthetic photos, a real short training, a report
	$(GAZE) demo $(if $(FAMILY),--family $(FAMILY))

$(RECIPES) $(GLITCHES): setup-train  ## train one recipe: make sdxl-standard DATASET=... MODEL=...
	$(GAZE) run $@ $(PATHS)

queue: setup-train  ## make queue QUEUE="sd15-standard sd15-uncropped"
	$(GAZE) queue $(QUEUE) $(PATHS)

sweep: setup-train  ## make sweep BASE=sd15-standard MODIFIERS="no-bucket crop-flip"
	$(GAZE) sweep $(BASE) $(MODIFIERS) $(PATHS)

.PHONY: setup-trackers
setup-trackers: setup-train  ## also install Weights & Biases (--log-with wandb) and MLflow (gaze export mlflow)
	$(VENV)/bin/pip install -q -e '.[train,test,wandb,mlflow]'

.PHONY: setup-slurm slurm-cluster status
setup-slurm: setup-train  ## also install submitit (the slurm extra) and Slurm's Debian packages
	$(VENV)/bin/pip install -q -e '.[train,test,slurm]' && scripts/slurm-cluster install

slurm-cluster:  ## a one-node Slurm cluster on this machine (then: export SLURM_CONF=... as it prints)
	scripts/slurm-cluster start

status: setup  ## make status SWEEP=runs/sweeps/<time>-<id> (default: the newest runs)
	$(GAZE) status $(SWEEP)

compare: setup  ## make compare RUNS="runs/a/... runs/b/..."
	$(GAZE) compare $(RUNS)
