# ecr-mirror-sync — the two commands a newcomer needs are `make demo` and `make test`.
# Both install whatever is missing first (`make deps` is idempotent).
SHELL := /bin/bash
.DEFAULT_GOAL := build

VENV    ?= .venv
TOOLS   ?= .tools/bin
HELM    ?= $(TOOLS)/helm
CARGO   ?= cargo
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export MOTO_SERVER := $(CURDIR)/$(VENV)/bin/moto_server

.PHONY: deps apt-deps py-deps helm-deps build test lint demo bench image fuzz-smoke clean helm-lint

deps: apt-deps py-deps helm-deps ## install the real components the tests, demo and benchmarks use

apt-deps:
	@missing=""; \
	for b in docker-registry:docker-registry htpasswd:apache2-utils skopeo:skopeo hyperfine:hyperfine openssl:openssl \
	         promtool:prometheus prometheus-pushgateway:prometheus-pushgateway \
	         prometheus-node-exporter:prometheus-node-exporter npm:npm python3:python3; do \
	  cmd=$${b%%:*}; pkg=$${b##*:}; command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	[ -x /usr/bin/time ] || missing="$$missing time"; \
	python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# One venv for every Python tool: moto (the ECR API), kubernetes-validate (the chart against Kubernetes' JSON
# schemas) and parliament (the IAM policies). Each is installed only when missing.
py-deps:
	@[ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV)
	@[ -x $(VENV)/bin/moto_server ] || $(VENV)/bin/pip install -q 'moto[server]>=5.1,<6'
	@[ -x $(VENV)/bin/kubernetes-validate ] || $(VENV)/bin/pip install -q 'kubernetes-validate>=1.37,<2'
	@[ -x $(VENV)/bin/parliament ] || $(VENV)/bin/pip install -q 'parliament>=1.6,<2'

helm-deps:
	@bash .ci/install-helm.sh >/dev/null

build:
	$(CARGO) build --all-targets

test: deps ## every test, against real docker-registry, moto and helm
	$(CARGO) test --all-targets -- --test-threads=4

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

demo: deps ## the main job end to end on local services
	$(CARGO) build
	bash .ci/demo.sh

bench: deps ## benchmarks against skopeo; writes docs/benchmarks.md
	bash bench/run

image: ## container image (needs a Docker engine)
	docker build -t ecr-mirror-sync:dev .

helm-lint: helm-deps
	$(HELM) lint --strict charts/ecr-mirror-sync

# cargo-fuzz passes nightly-only rustc flags (-Zsanitizer=address, sancov); RUSTC_BOOTSTRAP=1
# lets the one installed (stable) toolchain accept them. New inputs go to a working corpus in
# the ignored tests/fuzz/target; tests/fuzz/corpus/<target> (kept in git) is only read.
fuzz-smoke: ## each cargo-fuzz target for 60 s (not part of `make test`); see docs/reliability.md
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@failed=""; for t in policy_parse resource_tags reference_parse manifest_parse; do \
	  mkdir -p tests/fuzz/target/work-corpus/$$t; \
	  echo "== fuzzing $$t for 60 s"; \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir tests/fuzz $$t \
	    tests/fuzz/target/work-corpus/$$t tests/fuzz/corpus/$$t -- -max_total_time=60 \
	    || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-smoke: crashes in:$$failed (inputs in tests/fuzz/artifacts/)"; exit 1; fi

clean:
	$(CARGO) clean
