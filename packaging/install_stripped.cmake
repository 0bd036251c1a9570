# Runs at install time (cmake --install, cpack), once per component, after the binary is
# installed. Debian's dh_strip does the same: the installed kmsfs is stripped and keeps a
# .gnu_debuglink; its symbols and debug info go to a file of their own under
# PREFIX/lib/debug/.build-id/XX/REST.debug, where gdb, debuginfod and systemd-coredump look
# them up by the binary's build id. cpack installs each component into a staging tree of
# its own, so each half derives the debug file from the build tree's (unstripped) binary:
#   component kmsfs:  the stripped binary (the debug file is made only for its checksum);
#   component dbgsym: the debug file.
# Set before: KMSFS_OBJCOPY, KMSFS_BUILT_BINARY, KMSFS_INSTALLED_BINARY (relative to the
# prefix), KMSFS_STRIP_COMPONENT (the component being installed now), KMSFS_WORK_DIR (a
# scratch directory in the build tree: cmake -P runs in whatever directory it was called from).
set(_built "${KMSFS_BUILT_BINARY}")
set(_root "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")

# The build id: the .note.gnu.build-id section is a 12-byte note header, "GNU\0", the id.
file(MAKE_DIRECTORY "${KMSFS_WORK_DIR}")
set(_note "${KMSFS_WORK_DIR}/kmsfs.build-id.note")
execute_process(COMMAND "${KMSFS_OBJCOPY}" -O binary --only-section=.note.gnu.build-id "${_built}" "${_note}"
                RESULT_VARIABLE _rc)
set(_id "")
if(_rc EQUAL 0 AND EXISTS "${_note}")
  file(READ "${_note}" _hex HEX)
  string(LENGTH "${_hex}" _len)
  if(_len GREATER 34)
    string(SUBSTRING "${_hex}" 32 -1 _id)
  endif()
  file(REMOVE "${_note}")
endif()
if(_id STREQUAL "")
  # No build id (a linker told not to make one): gdb's other lookup, by path.
  set(_debug_rel "lib/debug${CMAKE_INSTALL_PREFIX}/${KMSFS_INSTALLED_BINARY}.debug")
else()
  string(SUBSTRING "${_id}" 0 2 _dir)
  string(SUBSTRING "${_id}" 2 -1 _rest)
  set(_debug_rel "lib/debug/.build-id/${_dir}/${_rest}.debug")
endif()

function(_kmsfs_keep_debug out)
  get_filename_component(_d "${out}" DIRECTORY)
  file(MAKE_DIRECTORY "${_d}")
  execute_process(COMMAND "${KMSFS_OBJCOPY}" --only-keep-debug --compress-debug-sections "${_built}" "${out}"
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "objcopy --only-keep-debug ${_built} failed")
  endif()
  file(CHMOD "${out}" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endfunction()

if(KMSFS_STRIP_COMPONENT STREQUAL "kmsfs")
  set(_bin "${_root}/${KMSFS_INSTALLED_BINARY}")
  # The debuglink names the file and holds its CRC: made beside the build, then dropped.
  get_filename_component(_name "${_debug_rel}" NAME)
  set(_tmp "${KMSFS_WORK_DIR}/debuglink/${_name}")
  _kmsfs_keep_debug("${_tmp}")
  execute_process(COMMAND "${KMSFS_OBJCOPY}" --strip-all --remove-section=.comment
                          "--add-gnu-debuglink=${_tmp}" "${_bin}" RESULT_VARIABLE _rc)
  file(REMOVE_RECURSE "${KMSFS_WORK_DIR}/debuglink")
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "objcopy --strip-all ${_bin} failed")
  endif()
  message(STATUS "Stripped: ${_bin} (debug info: ${CMAKE_INSTALL_PREFIX}/${_debug_rel})")
elseif(KMSFS_STRIP_COMPONENT STREQUAL "dbgsym")
  set(_debug "${_root}/${_debug_rel}")
  _kmsfs_keep_debug("${_debug}")
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${CMAKE_INSTALL_PREFIX}/${_debug_rel}")
  message(STATUS "Installing: ${_debug}")
endif()
