/* Kernel type definitions for CO-RE, one file per architecture.
 * See README.md in this folder for how they were generated. */
#pragma once

/* Kernel structs have padding; -Wpadded is for our own event contract. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"

#if defined(__TARGET_ARCH_x86)
#include "vmlinux_x86.h"
#else
/* Only x86_64 headers are committed. The programs read no
 * architecture-specific structure (no pt_regs), so the x86 types serve
 * little-endian targets as well; generate a per-arch file if that changes. */
#include "vmlinux_x86.h"
#endif

#pragma clang diagnostic pop
