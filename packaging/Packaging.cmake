# CPack: `cpack -G DEB` in the build directory makes
#   kmsfs_VERSION-1_ARCH.deb         everything but the debug info; Depends from
#                                    dpkg-shlibdeps (libfuse3-3, libssl3, libsodium23,
#                                    libcurl4, libsystemd0, ...) plus fuse3 (mount.fuse3,
#                                    fusermount3)
#   kmsfs-dbgsym_VERSION-1_ARCH.deb  the debug info under /usr/lib/debug/.build-id
# Installed under /usr (Debian never installs packages into /usr/local): kmsfs in
# /usr/bin, mount.kmsfs in /usr/sbin (mount(8)'s /sbin on merged-/usr Debian 12).
set(CPACK_PACKAGE_NAME kmsfs)
set(CPACK_PACKAGE_VENDOR "kmsfs")
set(KMSFS_PACKAGE_MAINTAINER "kmsfs maintainers <kmsfs@localhost>" CACHE STRING
    "The Maintainer: field of the .deb")
set(CPACK_PACKAGE_CONTACT "${KMSFS_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Each package's description is whole (summary line first): CPack would prefix a
# CPACK_PACKAGE_DESCRIPTION_SUMMARY to both, the dbgsym's too.
set(KMSFS_PACKAGE_SUMMARY "encrypted FUSE filesystem with keys in a local keyring or AWS KMS")
set(KMSFS_PACKAGE_DESCRIPTION
"kmsfs mounts a plaintext view of an encrypted backing directory. Every file has
its own data key, wrapped by a key in a local keyring or in AWS KMS; names are
encrypted too. Includes the mount(8) helper mount.kmsfs, the kmsfs@.service
systemd unit, man pages and bash completion.")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL kmsfs dbgsym)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/kmsfs/kmsfs")

set(CPACK_DEBIAN_KMSFS_PACKAGE_NAME kmsfs)
set(CPACK_DEBIAN_KMSFS_DESCRIPTION "${KMSFS_PACKAGE_SUMMARY}\n${KMSFS_PACKAGE_DESCRIPTION}")
set(CPACK_DEBIAN_KMSFS_PACKAGE_SECTION admin)
# The shared libraries' packages, as dpkg-shlibdeps finds them from the binary.
set(CPACK_DEBIAN_KMSFS_PACKAGE_SHLIBDEPS ON)
# mount.fuse3 (fstab type fuse.kmsfs) and fusermount3.
set(CPACK_DEBIAN_KMSFS_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_KMSFS_PACKAGE_RECOMMENDS "bash-completion")
set(CPACK_DEBIAN_KMSFS_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_SOURCE_DIR}/debian/postinst ${CMAKE_CURRENT_SOURCE_DIR}/debian/postrm)
set(CPACK_DEBIAN_KMSFS_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DBGSYM_PACKAGE_NAME kmsfs-dbgsym)
set(CPACK_DEBIAN_DBGSYM_PACKAGE_SECTION debug)
set(CPACK_DEBIAN_DBGSYM_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_DBGSYM_PACKAGE_DEPENDS "kmsfs (= ${PROJECT_VERSION}-${CPACK_DEBIAN_PACKAGE_RELEASE})")
set(CPACK_DEBIAN_DBGSYM_DESCRIPTION "debug symbols for kmsfs\nThe symbols and debug info of /usr/bin/kmsfs, found by its build id (gdb,\nsystemd-coredump).")

include(CPack)
