# The project's task runner; CI calls `make test` (through .ci/run).
#   make demo   build the frontend image and squash an example, showing layers and sizes
#   make test   every test: format, lints, unit tests, a short fuzz run, then end-to-end on
#               both engine generations (Docker 26.1 and 28.5), both stores each
#   make check  format, lints (Rust, shell scripts, workflows), a type check of the fuzz
#               targets and unit tests only (no engine)
#   make e2e ENGINE=26|28 MODE=classic|c8d   end-to-end tests on one engine and store
#   ENGINE=26|28 (default 26) picks the engine generation of e2e, demo, bench, frontend-image
#   make fuzz   every fuzz target, side by side, for FUZZ_SECONDS (nightly + cargo-fuzz)
#   make bench  benchmarks (not part of the tests)
#   make cross  the multi-platform release build, proved offline (containerd store, qemu-user;
#               not part of the tests: about 15 min the first time, 1 min when nothing changed);
#               PLATFORMS=linux/amd64,linux/arm64,... (default those two)
#   make release-image IMAGE=<registry>/<org>/squash-frontend VERSION=vX.Y.Z
#               build and push a release, every platform (the release workflow runs it)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
MODE ?= c8d
ENGINE ?= 26
FUZZ_SECONDS ?= 60
EXAMPLE ?= examples/toolchain
FRONTEND_IMAGE ?= squash-frontend:dev
ENGINE_SH := scripts/engine.sh
# Runs its argument with the environment of a started engine (generation $(ENGINE), store $(MODE)).
WITH_ENGINE = eval "$$($(ENGINE_SH) start $(ENGINE) $(MODE))" && $(ENGINE_SH) images >&2 &&

.PHONY: test check e2e demo bench fuzz frontend-image cross release-image stop

test: check
	fuzz/run.sh 10
	FRONTEND_IMAGE=$(FRONTEND_IMAGE) scripts/e2e.sh
	$(ENGINE_SH) stop

check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked --lib --bins --test gateway_flow
	cargo fmt --manifest-path fuzz/Cargo.toml --check
	cargo check --manifest-path fuzz/Cargo.toml --bins --quiet
	scripts/lint.sh
	scripts/release-image.sh selftest

fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# scripts/e2e.sh starts (or reuses) the local registry, for the tests that take the frontend
# image from a registry.
e2e:
	E2E_JOBS=1 FRONTEND_IMAGE=$(FRONTEND_IMAGE) scripts/e2e.sh $(ENGINE)-$(MODE)

demo:
	$(WITH_ENGINE) scripts/frontend-image.sh $(FRONTEND_IMAGE) >/dev/null && \
	  scripts/demo.sh $(FRONTEND_IMAGE) $(EXAMPLE)

bench:
	$(WITH_ENGINE) scripts/frontend-image.sh $(FRONTEND_IMAGE) >/dev/null && \
	  FRONTEND_IMAGE=$(FRONTEND_IMAGE) scripts/bench.sh

# The multi-platform build needs the containerd store; engine 28 unless ENGINE= says otherwise.
cross: ENGINE = 28
cross: MODE = c8d
cross:
	$(WITH_ENGINE) time scripts/cross.sh

release-image:
	@test -n "$(IMAGE)" && test -n "$(VERSION)" || { echo "usage: make release-image IMAGE=<registry>/<org>/squash-frontend VERSION=vX.Y.Z" >&2; exit 2; }
	scripts/release-image.sh "$(IMAGE)" "$(VERSION)"

frontend-image:
	$(WITH_ENGINE) scripts/frontend-image.sh $(FRONTEND_IMAGE)

stop:
	$(ENGINE_SH) stop
