# QEMU kernel matrix: Debian kernels 5.10 / 6.1 / 6.12 on x86, 6.1 / 6.12 on arm64, under TCG
# (see vm/README.md).
# Included from the Makefile.
#   make vm-deps                                   install qemu, busybox-static, kmod ... (apt)
#   make vm-kernels [VM_KERNELS='5.10 6.1 6.12 6.1-arm64 6.12-arm64']
#                                                  resolve, fetch and prepare kernels (cached)
#   make vm-run KERNEL=6.1 CMD='uname -r'          run CMD as root in a guest; exits with CMD's code
#   make vm-test [VM_TEST_PKGS=./...] [VM_TEST_RUN=regexp] [VM_TEST_SKIP=regexp]
#                [VM_TEST_CMD='vm/gotest.sh --run -test.v']
#                                                  smoke + Go test binaries on the x86 kernels
#                                                  (VM_KERNELS='6.1-arm64 6.12-arm64': the arm64 ones)
#                                                  (default: the kernel-dependent privileged tests;
#                                                  VM_TEST_SKIP= runs every live trace test too)
# CMD is passed verbatim ($HOME stays $HOME); VM_TEST_CMD is a make variable (write $$ for $).

VM_SCRIPTS    := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))/vm
VM_KERNELS    ?= 5.10 6.1 6.12
KERNEL        ?= 6.12
# The privileged tests that differ between kernels: loading and attaching per backend, the
# live traces (IPVS, kprobe backend, recording), the ring buffer's mapping and reading
# (TestRing), the topologies. Unit tests run on the host.
VM_TEST_PKGS  ?= ./internal/features ./internal/loader ./internal/trace ./internal/topology ./internal/doctor
VM_TEST_RUN   ?= TestProbes|TestLookup|TestLive|TestRing|TestRecordReplayParity|TestFeatures|TestOpen|TestForced|TestKernelStruct|TestBuild|TestIPVS|TestLiveIPVSLayout|TestDiagnose|TestNodeReportsFailure
# Under TCG a live trace test costs about a minute, most of it the verifier loading the
# programs (2 to 4 s each on 5.10); the whole set took 45 to 50 minutes a guest on a slow
# machine. These live tests run on the host's kernel only: what they check beyond the tests
# the guests keep is pathtrace's own (the filter's matching, names, following connections,
# dual-stack addresses, UDP and ping across nodes, many connections at once), on the same
# hooks, programs and event layouts. The guests keep every backend, hop kind, overlay, IPVS,
# NAT, drop, IPv6, fragment, ND and skb-reuse test, the recording and the loading of filters,
# and the diagnosis tests: the advice an operator gets differs by kernel (5.10 has no drop
# reasons; its kprobe table hops name the FORWARD chain's verdict).
VM_TEST_SKIP  ?= ^(TestLiveFilter|TestLiveFilterPerHeader|TestLiveDualStackPod|TestLiveIPv6ConnectionFollowed|TestLiveIPv6SameNode|TestLiveCrossNodePing|TestLiveCrossNodeUDP|TestLiveServiceNames|TestLiveConnectionsDelivered|TestLiveMixedTraffic|TestLiveFirstSeenAfterNAT|TestLiveUnrelatedTrafficMakesNoEvents)$$
VM_TEST_CMD   ?= vm/gotest.sh --run -test.run '$(VM_TEST_RUN)' -test.skip '$(VM_TEST_SKIP)'
VM_SMOKE_CMD  ?= vm/smoke.sh
vm_quote       = '$(subst ','\'',$(1))'

.PHONY: vm-deps vm-kernels vm-run vm-test

vm-deps:
	$(VM_SCRIPTS)/install-deps.sh

vm-kernels:
	$(VM_SCRIPTS)/kernels.sh $(VM_KERNELS)

vm-run:
	@VM_CMD=$(call vm_quote,$(value CMD)) $(VM_SCRIPTS)/run.sh $(call vm_quote,$(KERNEL))

vm-test:
	@VM_TEST_PKGS=$(call vm_quote,$(VM_TEST_PKGS)) VM_TEST_CMD=$(call vm_quote,$(VM_TEST_CMD)) \
	  VM_SMOKE_CMD=$(call vm_quote,$(VM_SMOKE_CMD)) $(VM_SCRIPTS)/matrix.sh $(VM_KERNELS)
