# portier: make run (demo), make test (everything), make bench (numbers).
GO       ?= go
BIN      ?= bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
FUZZTIME ?= 60s
PREFIX   ?= /usr/local

export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build run test test-short vet fmt-check fuzz hostile bench install deb clean

all: build

# Static binaries (CGO_ENABLED=0): they run on any Linux host, no libc match needed.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/portier ./cmd/portier
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/demobackend ./examples/demobackend
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/h3get ./examples/h3get

# The proxy with examples/demo.yaml and demo backends; prints what to try. Ctrl-C stops all.
run: build
	@BIN=$(BIN) ./examples/run-demo.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# Every test, with the race detector, plus a short run of every fuzz target.
test: fmt-check vet
	$(GO) test -race -count=1 -timeout 9m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$${FUZZTIME_CI:-10s}

# Each fuzz target for FUZZTIME (default 60s). A run that ends in Go's
# "context deadline exceeded" without a failing input (the coordinator could not
# stop a busy worker in time) is run once more; a real failure is never retried.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    ok=0; for try in 1 2; do \
	      if $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/tmp/portier-fuzz.log 2>&1; then ok=1; break; fi; \
	      grep -q 'Failing input written' /tmp/portier-fuzz.log && break; \
	      grep -q 'context deadline exceeded' /tmp/portier-fuzz.log || break; \
	      echo "  (go's fuzz coordinator timed out stopping a worker on this loaded machine; no failing input: once more)"; \
	    done; \
	    [ $$ok = 1 ] || { cat /tmp/portier-fuzz.log; exit 1; }; \
	  done; \
	done

# The hostile suite in its full form (make test runs a short form).
hostile:
	PORTIER_HOSTILE=full $(GO) test -count=1 -timeout 10m -run 'TestHostile' -v ./e2e

# The binary, the systemd unit and an example config (kept when present).
install: build
	install -D -m 0755 $(BIN)/portier $(DESTDIR)$(PREFIX)/bin/portier
	install -D -m 0644 deploy/portier.service $(DESTDIR)/etc/systemd/system/portier.service
	@if [ ! -e $(DESTDIR)/etc/portier/portier.yaml ]; then \
	  install -D -m 0644 deploy/portier.yaml $(DESTDIR)/etc/portier/portier.yaml; \
	else echo "kept existing $(DESTDIR)/etc/portier/portier.yaml"; fi

# Debian package bin/portier_<version>_<arch>.deb (deploy/deb/build.sh; DEB_VERSION= overrides the
# version taken from git).
deb: build
	@deploy/deb/build.sh $(BIN)/portier "$(DEB_VERSION)" $(BIN) $$($(GO) env GOARCH)

-include bench/bench.mk

clean:
	rm -rf $(BIN)
