# Signet build entry points. `make build` produces ./bin/signet.
GO        ?= go
BIN       ?= bin/signet
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PROTOS    := $(shell find proto -name '*.proto')
STATICCHECK_VERSION ?= v0.8.2

.PHONY: build test quick bench generate lint clean manifests

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/signet

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
	rm -rf bin
