# Runs at install time: the systemd units with the install prefix's paths in them
# (ExecStart=, Documentation=). Configured here, not when configuring the build, because
# `cmake --install --prefix` and cpack (prefix /usr) choose the prefix late.
# Set before: KMSFS_UNIT_SOURCE_DIR (systemd/), KMSFS_WORK_DIR (scratch, in the build tree),
# KMSFS_BINDIR, KMSFS_DOCDIR, KMSFS_SYSTEMD_UNITDIR (relative to the prefix).
set(KMSFS_UNIT_BINDIR "${CMAKE_INSTALL_PREFIX}/${KMSFS_BINDIR}")
# README.md at the top of the doc directory, docs/*.md below it (packaging/).
set(KMSFS_UNIT_DOCDIR "${CMAKE_INSTALL_PREFIX}/${KMSFS_DOCDIR}/docs")
set(_out "${KMSFS_WORK_DIR}/units")
file(REMOVE_RECURSE "${_out}")
configure_file("${KMSFS_UNIT_SOURCE_DIR}/kmsfs@.service.in" "${_out}/kmsfs@.service" @ONLY)
configure_file("${KMSFS_UNIT_SOURCE_DIR}/examples/mnt-plain.mount.in" "${_out}/examples/mnt-plain.mount" @ONLY)
configure_file("${KMSFS_UNIT_SOURCE_DIR}/examples/mnt-plain.automount.in" "${_out}/examples/mnt-plain.automount" @ONLY)
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${KMSFS_SYSTEMD_UNITDIR}" TYPE FILE
     FILES "${_out}/kmsfs@.service")
file(INSTALL DESTINATION "${CMAKE_INSTALL_PREFIX}/${KMSFS_DOCDIR}/examples" TYPE FILE
     FILES "${_out}/examples/mnt-plain.mount" "${_out}/examples/mnt-plain.automount")
