# The kernel matrix under Vagrant: local Debian boxes (bullseye 5.10, bookworm 6.1, trixie
# 6.12) run by libvirt with QEMU's TCG (see vagrant/README.md). Included from the Makefile.
#   make vagrant-deps                      vagrant, vagrant-libvirt, libvirt, qemu, mmdebstrap (apt)
#   make vagrant-boxes [VAGRANT_SERIES='5.10 6.1 6.12']
#                                          build (cached) and `vagrant box add` the boxes
#   make vagrant-test [VAGRANT_SERIES=...] [VM_TEST_PKGS=...] [VM_TEST_RUN=regexp] [VM_TEST_SKIP=regexp]
#                                          boot each box, run the kernel-dependent tests and
#                                          `pathtrace demo --ipvs`, print a table, destroy
#                                          (VAGRANT_BESIDE='make vm-test VM_KERNELS=6.12-arm64':
#                                          one more VM job in the first slot a box frees; CI's matrix)

VAGRANT_SCRIPTS := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))/vagrant
VAGRANT_SERIES  ?= 5.10 6.1 6.12
# Debian packages: Vagrant with its libvirt provider, libvirt's daemons, QEMU (TCG), mmdebstrap
# and qemu-utils for the boxes, dnsmasq for their DHCP, rsync and ssh for the synced folders.
VAGRANT_DEPS    := vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu \
  libvirt-clients qemu-system-x86 qemu-utils mmdebstrap debian-archive-keyring e2fsprogs \
  dnsmasq-base iptables rsync openssh-client python3 util-linux

.PHONY: vagrant-deps vagrant-boxes vagrant-test

vagrant-deps:
	scripts/install-deps.sh $(VAGRANT_DEPS)

vagrant-boxes: vagrant-deps
	$(VAGRANT_SCRIPTS)/box.sh $(VAGRANT_SERIES)

vagrant-test: vagrant-deps
	@VM_TEST_PKGS=$(call vm_quote,$(VM_TEST_PKGS)) VM_TEST_RUN=$(call vm_quote,$(VM_TEST_RUN)) \
	  VM_TEST_SKIP=$(call vm_quote,$(VM_TEST_SKIP)) \
	  $(VAGRANT_SCRIPTS)/test.sh $(VAGRANT_SERIES)
