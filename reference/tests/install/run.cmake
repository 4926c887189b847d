# cmake -D... -P run.cmake (reference/tests/install/CMakeLists.txt passes the
# variables): the install.consumer test.
#   1. cmake --install BUILD_DIR --prefix WORK_DIR/prefix (a fresh prefix)
#   2. the exported package names no build-tree path and no ccts_pch
#   3. configure SOURCE_DIR (consumer/) in WORK_DIR/consumer-build with
#      CMAKE_PREFIX_PATH = prefix + the build's own (LibTorch), the build's
#      generator, compiler, launcher and flags; it must find the build's LibTorch
#   4. build it and run it; the installed ccts-adapter must load (LD_BIND_NOW)
#      and answer a bye
cmake_minimum_required(VERSION 3.18)
string(REPLACE "|" ";" PREFIX_PATH "${PREFIX_PATH}")
string(REPLACE "|" ";" CXX_LAUNCHER "${CXX_LAUNCHER}")
set(prefix "${WORK_DIR}/prefix")
set(consumer_build "${WORK_DIR}/consumer-build")
# Fixed paths (not per run): the consumer's unit stays a ccache hit.
file(REMOVE_RECURSE "${prefix}" "${consumer_build}")

set(STEP_TEST install.consumer)
include("${CMAKE_CURRENT_LIST_DIR}/../step.cmake")

set(install "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
step("install" install)

# The package must not need this build tree: no ccts_pch, no source or build path.
file(GLOB package_files "${prefix}/lib*/cmake/ccts/*.cmake")
if(NOT package_files)
  message(FATAL_ERROR "install.consumer: no CMake package under ${prefix}/lib*/cmake/ccts")
endif()
foreach(file ${package_files})
  file(READ "${file}" text)
  foreach(needle "ccts_pch" "${ROOT}" "${BUILD_DIR}")
    string(FIND "${text}" "${needle}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "install.consumer: ${file} names '${needle}'")
    endif()
  endforeach()
endforeach()

string(REPLACE ";" "\\;" prefix_path "${prefix};${PREFIX_PATH}")
set(configure "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${consumer_build}" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix_path}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_BUILD_TYPE=${BUILD_TYPE}")
if(BUILD_TYPE)
  string(TOUPPER "${BUILD_TYPE}" config)
  list(APPEND configure "-DCMAKE_CXX_FLAGS_${config}=${CXX_FLAGS_CONFIG}")
endif()
if(CXX_LAUNCHER)
  string(REPLACE ";" "\\;" launcher "${CXX_LAUNCHER}")
  list(APPEND configure "-DCMAKE_CXX_COMPILER_LAUNCHER=${launcher}")
endif()
step("configure consumer" configure)

file(STRINGS "${consumer_build}/CMakeCache.txt" found REGEX "^Torch_DIR:")
string(REGEX REPLACE "^[^=]*=" "" found "${found}")
get_filename_component(found "${found}" REALPATH)
get_filename_component(expected "${TORCH_DIR}" REALPATH)
if(NOT found STREQUAL expected)
  message(FATAL_ERROR "install.consumer: the consumer found LibTorch in ${found}, the build used ${expected}")
endif()

set(build "${CMAKE_COMMAND}" --build "${consumer_build}")
step("build consumer" build)
set(run "${CMAKE_COMMAND}" -E env LD_BIND_NOW=1 "${consumer_build}/ccts-consumer")
step("run consumer" run)

if(EXISTS "${prefix}/bin/ccts-adapter")
  file(WRITE "${WORK_DIR}/bye.jsonl" "{\"type\": \"bye\"}\n")
  # LD_BIND_NOW: every symbol binds at load, so a LibTorch other than the
  # build's (the system's, found for want of an RPATH) fails here.
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env LD_BIND_NOW=1 "${prefix}/bin/ccts-adapter"
                  INPUT_FILE "${WORK_DIR}/bye.jsonl"
                  OUTPUT_VARIABLE reply RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT reply MATCHES "\"bye\"")
    message(FATAL_ERROR "install.consumer: the installed ccts-adapter answered '${reply}' (exit ${rc})")
  endif()
  message(STATUS "install.consumer: installed ccts-adapter answers bye")
endif()
