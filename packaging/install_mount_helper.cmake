# Runs at install time: mount.kmsfs, a symlink to kmsfs in a directory mount(8) searches
# (/sbin, /sbin/fs.d, /sbin/fs; cli/mount_helper.h). Decided here, not when configuring,
# because `cmake --install --prefix` and cpack (prefix /usr) choose the prefix late:
#   KMSFS_MOUNT_HELPER_DIR set: that directory;
#   prefix /usr:                /usr/sbin (on a merged-/usr system such as Debian 12, /sbin);
#   prefix /usr/local:          /sbin (mount(8) never looks under /usr/local);
#   any other prefix (a staging tree, /opt/kmsfs): PREFIX/sbin, with a note that mount(8)
#                               will not find it there.
# Set before: KMSFS_MOUNT_HELPER_DIR (may be empty), KMSFS_BINDIR (relative to the prefix).
set(_prefix "${CMAKE_INSTALL_PREFIX}")
set(_dir "${KMSFS_MOUNT_HELPER_DIR}")
if(_dir STREQUAL "")
  if(_prefix STREQUAL "/usr")
    set(_dir "/usr/sbin")
  elseif(_prefix STREQUAL "/usr/local")
    set(_dir "/sbin")
  else()
    set(_dir "${_prefix}/sbin")
    message(STATUS "Note: mount(8) does not search ${_dir}; link mount.kmsfs into /sbin "
                   "(or configure with -DKMSFS_MOUNT_HELPER_DIR=/sbin) for fstab mounts")
  endif()
endif()
set(_target "${_prefix}/${KMSFS_BINDIR}/kmsfs")
string(FIND "${_dir}/" "${_prefix}/" _at)
if(_at EQUAL 0)
  # Inside the prefix (a package): relative, as Debian policy wants.
  file(RELATIVE_PATH _target "${_dir}" "${_target}")
endif()
set(_link "$ENV{DESTDIR}${_dir}/mount.kmsfs")
file(MAKE_DIRECTORY "$ENV{DESTDIR}${_dir}")
file(CREATE_LINK "${_target}" "${_link}" SYMBOLIC)
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${_dir}/mount.kmsfs")
message(STATUS "Installing: ${_link} -> ${_target}")
