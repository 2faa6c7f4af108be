# Signet build entry points. `make build` produces ./bin/signet and
# ./bin/signet-agent (the slim node binary).
GO        ?= go
BIN       ?= bin/signet
AGENT_BIN ?= bin/signet-agent
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Commit and build date are the commit's, never the clock's, so two builds
# of one commit are byte-identical (see `make release`).
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
# The slim agent's build tags: grpcnotrace leaves out grpc's
# golang.org/x/net/trace (and html/template with it), a debug page the
# agent never serves, which every agent would otherwise initialise.
AGENT_TAGS ?= grpcnotrace
LDFLAGS   := -s -w -buildid= -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(BUILD_DATE)
# make release: static binaries per platform into $(DIST), with SHA256SUMS.
DIST      ?= dist
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
PROTOS    := $(shell find proto -name '*.proto')
STATICCHECK_VERSION ?= v0.8.2

.PHONY: build release release-check test quick bench generate lint clean manifests

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/signet
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' -o $(AGENT_BIN) ./cmd/signet-agent

# Static (CGO_ENABLED=0), path-free (-trimpath) binaries named
# signet-$(VERSION)-GOOS-GOARCH and signet-agent-$(VERSION)-GOOS-GOARCH
# (the slim agent: Linux only, where agents run), stamped with the commit and its commit
# time, and their SHA256SUMS. Reproducible: the same commit gives the same
# checksums on any machine with the same Go version (.ci/reproducible
# checks it).
release:
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for p in $(PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  echo "build $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOFLAGS=-buildvcs=false $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	    -o $(DIST)/signet-$(VERSION)-$$os-$$arch ./cmd/signet; \
	  if [ "$$os" = linux ]; then \
	    CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOFLAGS=-buildvcs=false $(GO) build -trimpath -tags '$(AGENT_TAGS)' -ldflags '$(LDFLAGS)' \
	      -o $(DIST)/signet-agent-$(VERSION)-$$os-$$arch ./cmd/signet-agent; \
	  fi; \
	done
	cd $(DIST) && sha256sum signet-* > SHA256SUMS && cat SHA256SUMS

# Builds the release twice (one platform by default) and compares checksums.
release-check:
	.ci/reproducible

# The test command of the README and CI: every test, with the race detector.
# PostgreSQL tests use $$SIGNET_TEST_POSTGRES (default: 127.0.0.1:5432/test).
test:
	$(GO) test -race -count=1 -timeout 20m ./...

# Fast feedback without the race detector.
quick:
	$(GO) test ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Regenerates the protobuf code under internal/gen. Needs protoc
# (Debian: protobuf-compiler) and the Go plugins installed by this target.
generate:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc -I proto --go_out=. --go_opt=module=github.com/signet-id/signet \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/signet-id/signet $(PROTOS)

# Renders deploy/kubernetes/signet.yaml from the Helm chart (after helm lint);
# deploy/manifests_test.go fails when it is stale. Helm comes from the module
# proxy (HELM=path/to/helm to use another).
manifests:
	deploy/helm/render.sh

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin $(DIST)
