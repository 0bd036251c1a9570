# kmsfs_git_commit(VAR): the commit the source tree is at ("unknown" outside a git
# checkout or without git), for kmsfs_build_info and `kmsfs --version`. Read at configure
# time; HEAD and the branch's ref are configure dependencies, so a commit or a checkout
# re-runs CMake at the next build and the label follows.
function(kmsfs_git_commit var)
  set(commit "unknown")
  find_package(Git QUIET)
  if(GIT_FOUND)
    execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short=12 HEAD
                    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
                    OUTPUT_VARIABLE out RESULT_VARIABLE rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(rc EQUAL 0 AND out MATCHES "^[0-9a-f]+$")
      set(commit "${out}")
      execute_process(COMMAND ${GIT_EXECUTABLE} diff --quiet HEAD --
                      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} RESULT_VARIABLE dirty ERROR_QUIET)
      if(NOT dirty EQUAL 0)
        set(commit "${commit}-dirty")
      endif()
      execute_process(COMMAND ${GIT_EXECUTABLE} symbolic-ref -q HEAD
                      WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE branch ERROR_QUIET
                      OUTPUT_STRIP_TRAILING_WHITESPACE)
      foreach(ref HEAD ${branch})
        execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --path-format=absolute --git-path ${ref}
                        WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE path ERROR_QUIET
                        OUTPUT_STRIP_TRAILING_WHITESPACE)
        if(EXISTS "${path}")
          set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${path}")
        endif()
      endforeach()
    endif()
  endif()
  set(${var} "${commit}" PARENT_SCOPE)
endfunction()
