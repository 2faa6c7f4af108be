# syntax=docker/dockerfile:1
# Signet container image: two static binaries on an empty base, run as a
# non-root user. No shell, no package manager, no libc. `signet` is the
# whole platform; `signet-agent` is the slim node agent (no store, CA or
# scanner), for agent containers.
#
#   docker build -t signet .
#   docker run --rm signet version
#   docker run -v signet-data:/var/lib/signet -p 8081:8081 signet \
#     server run --trust-domain example.org --data-dir /var/lib/signet/server
#
#   docker run --entrypoint /usr/local/bin/signet-agent signet run --config /etc/signet/agent.yaml
#
# (`signet agent run` works too: the same command, in the larger binary.)

# Build stage: a pinned Go toolchain (go.mod needs Go 1.26).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=""
ARG BUILD_DATE=""
# Static and path-free, like `make release`; the agent with the Makefile's
# AGENT_TAGS.
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -buildid= -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.buildDate=${BUILD_DATE}" \
      -o /out/signet ./cmd/signet \
 && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -tags grpcnotrace \
      -ldflags "-s -w -buildid= -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.buildDate=${BUILD_DATE}" \
      -o /out/signet-agent ./cmd/signet-agent \
 && mkdir -p /out/rootfs/etc /out/rootfs/var/lib/signet /out/rootfs/run/signet /out/rootfs/tmp \
 && echo 'signet:x:65532:65532:signet:/var/lib/signet:/sbin/nologin' > /out/rootfs/etc/passwd \
 && echo 'signet:x:65532:' > /out/rootfs/etc/group

# Runtime stage: nothing but the binary, CA roots (for PostgreSQL over TLS
# and cloud metadata checks), a passwd entry for the non-root user and
# directories it owns.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/rootfs/etc/passwd /out/rootfs/etc/group /etc/
COPY --from=build --chown=65532:65532 --chmod=0700 /out/rootfs/var/lib/signet /var/lib/signet
COPY --from=build --chown=65532:65532 --chmod=0755 /out/rootfs/run/signet /run/signet
COPY --from=build --chmod=1777 /out/rootfs/tmp /tmp
COPY --from=build /out/signet /usr/local/bin/signet
COPY --from=build /out/signet-agent /usr/local/bin/signet-agent
USER 65532:65532
WORKDIR /var/lib/signet
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/signet"]
CMD ["--help"]
