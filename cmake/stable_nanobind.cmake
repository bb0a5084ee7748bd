# cmake/stable_nanobind.cmake: makes nanobind's files live at a fixed path inside the build
# directory. pip builds in an isolated environment under a new temporary folder each time, so
# nanobind's include and source paths (and with them every binding's compile command) would change
# between two `pip install .` runs and ninja would rebuild them all. Files are copied only when
# their content differs (COPY_FILE ONLY_IF_DIFFERENT keeps the old copy and its timestamp), so an
# unchanged nanobind rebuilds nothing; a new nanobind version replaces what changed.
# Sets nanobind_DIR for find_package(nanobind CONFIG); a nanobind_DIR given by the caller wins.

function(eli_stable_nanobind)
  set(dest "${CMAKE_BINARY_DIR}/_nanobind")
  if(nanobind_DIR AND NOT nanobind_DIR STREQUAL "${dest}/cmake")
    return()
  endif()
  execute_process(COMMAND "${Python_EXECUTABLE}" -m nanobind --cmake_dir
    OUTPUT_STRIP_TRAILING_WHITESPACE OUTPUT_VARIABLE nb_cmake_dir RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT EXISTS "${nb_cmake_dir}")
    message(FATAL_ERROR "nanobind not found for ${Python_EXECUTABLE} (pip install nanobind)")
  endif()
  get_filename_component(nb_root "${nb_cmake_dir}" DIRECTORY)
  file(GLOB_RECURSE files RELATIVE "${nb_root}" "${nb_root}/*")
  set(count 0)
  foreach(rel IN LISTS files)
    if(rel MATCHES "__pycache__|\\.pyc$")
      continue()
    endif()
    get_filename_component(sub "${dest}/${rel}" DIRECTORY)
    file(MAKE_DIRECTORY "${sub}")
    file(COPY_FILE "${nb_root}/${rel}" "${dest}/${rel}" ONLY_IF_DIFFERENT)
    math(EXPR count "${count} + 1")
  endforeach()
  message(STATUS "eli: nanobind from ${nb_root} (${count} files) at ${dest}")
  set(nanobind_DIR "${dest}/cmake" CACHE PATH "nanobind's CMake package (a stable copy)" FORCE)
endfunction()
