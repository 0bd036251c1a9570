// The one include of libfuse's low-level API, with the API version pinned (Debian 12
// ships libfuse 3.14).
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
