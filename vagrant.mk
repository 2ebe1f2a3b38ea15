# The kernel matrix under Vagrant: local Debian boxes (bullseye 5.10, bookworm 6.1, trixie
# 6.12) run by libvirt with QEMU's TCG (see vagrant/README.md). Included from the Makefile.
#   make vagrant-deps                      vagrant, vagrant-libvirt, libvirt, qemu, mmdebstrap (apt)
#   make vagrant-boxes [VAGRANT_SERIES='5.10 6.1 6.12']
#                                          build (cached) and `vagrant box add` the boxes
#   make vagrant-test [VAGRANT_SERIES=...] [VM_TEST_PKGS=...] [VM_TEST_RUN=regexp]
#                                          boot each box, run the kernel-dependent tests and
#                                          `pathtrace demo --ipvs`, print a table, destroy

VAGRANT_SCRIPTS := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))/vagrant
VAGRANT_SERIES  ?= 5.10 6.1 6.12

.PHONY: vagrant-deps vagrant-boxes vagrant-test

vagrant-deps:
	$(VAGRANT_SCRIPTS)/install-deps.sh

vagrant-boxes: vagrant-deps
	$(VAGRANT_SCRIPTS)/box.sh $(VAGRANT_SERIES)

vagrant-test: vagrant-deps
	@VM_TEST_PKGS=$(call vm_quote,$(VM_TEST_PKGS)) VM_TEST_RUN=$(call vm_quote,$(VM_TEST_RUN)) \
	  $(VAGRANT_SCRIPTS)/test.sh $(VAGRANT_SERIES)
