/* Kernel type definitions for CO-RE, one file per architecture.
 * See README.md in this folder for how they were generated. */
#pragma once

/* Kernel structs have padding; -Wpadded is for our own event contract. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"

#if defined(__TARGET_ARCH_x86)
#include "vmlinux_x86.h"
#elif defined(__TARGET_ARCH_arm64)
#include "vmlinux_arm64.h"
#else
#error "no kernel types for this architecture: add bpf/include/vmlinux_<arch>.h (README.md)"
#endif

#pragma clang diagnostic pop
