# pathtrace — see README.md. Run as root for demo and the privileged tests.
GO       ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN      := bin/pathtrace
GOFLAGS_TEST ?= -count=1 -p 1

.PHONY: all build release image demo test test-unit deps generate vet fmt bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/pathtrace
	ln -sf pathtrace $(dir $(BIN))kubectl-pathtrace  # kubectl pathtrace, with bin/ on PATH

# Static release binaries (no cgo, no clang: the BPF objects of both
# architectures are committed) with their checksums:
# dist/pathtrace-linux-amd64, dist/pathtrace-linux-arm64, dist/SHA256SUMS.
RELEASE_ARCHES ?= amd64 arm64
release:
	@mkdir -p dist
	@for a in $(RELEASE_ARCHES); do \
	  echo "dist/pathtrace-linux-$$a"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -o dist/pathtrace-linux-$$a ./cmd/pathtrace || exit 1; \
	done
	cd dist && sha256sum $(RELEASE_ARCHES:%=pathtrace-linux-%) >SHA256SUMS

# The container image of kubectl pathtrace's tracer pods and of the
# DaemonSet (deploy/daemonset.yaml), as OCI archives built without a
# container engine: dist/pathtrace-image-ARCH.tar. Import one on a node
# with `ctr -n k8s.io images import`, or push it with skopeo.
IMAGE ?= ghcr.io/pathtrace/pathtrace:latest
image: release
	@for a in $(RELEASE_ARCHES); do \
	  echo "dist/pathtrace-image-$$a.tar ($(IMAGE))"; \
	  $(GO) run ./internal/ociimage/mkimage -binary dist/pathtrace-linux-$$a -arch $$a -name $(IMAGE) -o dist/pathtrace-image-$$a.tar || exit 1; \
	done

deps:
	scripts/install-deps.sh

# The built-in two-node cluster, traced.
demo: deps build
	./$(BIN) demo

# Every test; the privileged ones (BPF, network namespaces) skip with a
# reason unless run as root. PATHTRACE_TEST_STRICT=1: a skip internal/testutil
# does not expect on this kernel, or for a tool deps installs, fails the test.
# -p 1: the privileged tests of different packages build clusters with the
# same addresses and must not run at once.
test: deps vet
	PATHTRACE_TEST_STRICT=1 $(GO) test $(GOFLAGS_TEST) ./...

test-unit:
	$(GO) test -count=1 ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Rebuild the BPF objects and the Go types from bpf/ (needs clang, libbpf-dev).
generate:
	WITH_CLANG=1 scripts/install-deps.sh
	$(GO) generate ./internal/bpf

# What tracing costs and how fast events flow (docs/BENCHMARKS.md): prints
# the ratios and rewrites the generated part of docs/BENCHMARKS.md. As root,
# about 8 minutes; installs iperf3 and tcpdump from Debian if missing.
# BENCHFLAGS go to bench/ptbench, e.g. BENCHFLAGS="-phases datapath -reps 8";
# -bin-b OTHER_BINARY measures a change side by side.
bench: build
	scripts/install-deps.sh iperf3
	$(GO) build -o bin/ptbench ./bench/ptbench
	./bin/ptbench -bin $(BIN) -go $(GO) $(BENCHFLAGS)

clean:
	rm -rf bin dist

# The Kubernetes lab (docs/lab.md): real kube-apiserver, etcd, and two nodes
# in network namespaces with containerd, flanneld, kubelet and kube-proxy.
# lab-deps installs Debian's packages and builds the Kubernetes binaries
# into /var/cache/pathtrace/k8s (about 7 minutes once, then cached).
# LAB_MODE=iptables|nftables is kube-proxy's mode.
LAB_MODE ?= iptables
.PHONY: lab-deps lab-up lab-down lab-test
lab-deps:
	scripts/lab-deps.sh

lab-up: lab-deps
	$(GO) run ./lab/ptlab -mode $(LAB_MODE) up

lab-down:
	$(GO) run ./lab/ptlab down

# The tests on the lab (TestLab), both kube-proxy modes: about half a
# minute once the binaries are built.
lab-test: lab-deps
	PATHTRACE_LAB=1 PATHTRACE_TEST_STRICT=1 $(GO) test $(GOFLAGS_TEST) -v -run 'TestLab' ./internal/k8slab/

include vm.mk
include vagrant.mk
