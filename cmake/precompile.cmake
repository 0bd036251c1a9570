# kmsfs_precompile_heavy_headers(): with -DKMSFS_PCH=ON, every C++ target with several
# sources precompiles the header-only libraries it links (CLI11, nlohmann-json, spdlog,
# GoogleTest, rapidcheck). Measured on GCC 12 at -O2: including CLI/CLI.hpp alone costs
# ~11 s of CPU per translation unit, nlohmann/json.hpp ~4.5 s, gtest/gtest.h ~3.5 s, and a
# cold build parses them in ~170 units. CI's builds are cold (a fresh machine, no ccache),
# so scripts/test.sh turns this on; it is off by default because ccache does not cache
# units built against a precompiled header unless told to be sloppy about it.
option(KMSFS_PCH "Precompile the heavy header-only libraries per target (cold builds)" OFF)

function(kmsfs_collect_targets dir out)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
  foreach(sub IN LISTS subdirs)
    kmsfs_collect_targets(${sub} sub_targets)
    list(APPEND targets ${sub_targets})
  endforeach()
  set(${out} ${targets} PARENT_SCOPE)
endfunction()

function(kmsfs_precompile_heavy_headers)
  if(NOT KMSFS_PCH)
    return()
  endif()
  # Which header a linked library means. Only the direct links count: a target that gets
  # json through another library's PUBLIC link includes it through that library's headers
  # at most, and pays for it once per unit either way.
  set(lib_headers
    "CLI11::CLI11=<CLI/CLI.hpp>"
    "nlohmann_json::nlohmann_json=<nlohmann/json.hpp>"
    "spdlog::spdlog=<spdlog/spdlog.h>"
    "GTest::gtest=<gtest/gtest.h>"
    "GTest::gmock=<gmock/gmock.h>"
    "rapidcheck=<rapidcheck.h>")
  kmsfs_collect_targets(${PROJECT_SOURCE_DIR} targets)
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(NOT type MATCHES "^(STATIC_LIBRARY|SHARED_LIBRARY|OBJECT_LIBRARY|EXECUTABLE)$")
      continue()
    endif()
    get_target_property(sources ${t} SOURCES)
    list(FILTER sources INCLUDE REGEX "\\.cc$")
    list(LENGTH sources n)
    # One precompiled header costs about one heavy unit: worth it from three units on.
    if(n LESS 3)
      continue()
    endif()
    get_target_property(links ${t} LINK_LIBRARIES)
    if(NOT links)
      continue()
    endif()
    set(headers "")
    foreach(pair IN LISTS lib_headers)
      string(REPLACE "=" ";" kv "${pair}")
      list(GET kv 0 lib)
      list(GET kv 1 header)
      if(lib IN_LIST links)
        list(APPEND headers ${header})
      endif()
    endforeach()
    if(headers)
      target_precompile_headers(${t} PRIVATE ${headers})
    endif()
  endforeach()
endfunction()
