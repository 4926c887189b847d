# cmake -D... -P run.cmake (reference/tests/fuzz/CMakeLists.txt passes the
# variables): the fuzz.adapter_intake test.
#   1. cmake --install BUILD_DIR into WORK_DIR/prefix
#   2. configure and build target/ there with CLANGXX (libFuzzer, ASan)
#   3. the inputs of regressions/ run clean; with CCTS_MUTANT set to a bug one
#      of them found, they must crash (the test can fail)
#   4. seeds.py writes the suite's run messages to WORK_DIR/seeds; libFuzzer
#      mutates them for SECONDS (corpus kept in WORK_DIR/corpus between runs)
# A crash, hang (-timeout) or reply that is not the protocol's fails the test,
# naming the input libFuzzer saved; once fixed, it joins regressions/.
cmake_minimum_required(VERSION 3.18)
if(DEFINED ENV{CCTS_FUZZ_SECONDS})  # a longer run: CCTS_FUZZ_SECONDS=1800 ctest -L fuzz
  set(SECONDS "$ENV{CCTS_FUZZ_SECONDS}")
endif()
string(REPLACE "|" ";" PREFIX_PATH "${PREFIX_PATH}")
string(REPLACE "|" ";" CXX_LAUNCHER "${CXX_LAUNCHER}")

if(NOT CLANGXX)
  message(STATUS "fuzz.adapter_intake: skipped: no clang++ (Debian packages clang, libclang-rt-dev)")
  return()
endif()
execute_process(COMMAND "${CLANGXX}" -print-file-name=libclang_rt.fuzzer-x86_64.a
                OUTPUT_VARIABLE fuzzer_runtime OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT IS_ABSOLUTE "${fuzzer_runtime}" OR NOT EXISTS "${fuzzer_runtime}")
  message(STATUS "fuzz.adapter_intake: skipped: ${CLANGXX} has no libFuzzer (Debian package libclang-rt-dev)")
  return()
endif()

set(prefix "${WORK_DIR}/prefix")
# Fixed paths: the target's unit stays a ccache hit, the corpus grows.
set(target_build "${WORK_DIR}/target-build")
set(seeds "${WORK_DIR}/seeds")
set(corpus "${WORK_DIR}/corpus")
set(artifacts "${WORK_DIR}/artifacts")
file(REMOVE_RECURSE "${prefix}" "${seeds}" "${artifacts}")
file(MAKE_DIRECTORY "${corpus}" "${artifacts}")

set(STEP_TEST fuzz.adapter_intake)
include("${CMAKE_CURRENT_LIST_DIR}/../step.cmake")

set(install "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
step("install" install)

string(REPLACE ";" "\\;" prefix_path "${prefix};${PREFIX_PATH}")
set(configure "${CMAKE_COMMAND}" -S "${SOURCE_DIR}/target" -B "${target_build}" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${prefix_path}" "-DCMAKE_CXX_COMPILER=${CLANGXX}" -DCMAKE_BUILD_TYPE=RelWithDebInfo
    "-DADAPTER_DIR=${ROOT}/reference/adapter")
if(CXX_LAUNCHER)
  string(REPLACE ";" "\\;" launcher "${CXX_LAUNCHER}")
  list(APPEND configure "-DCMAKE_CXX_COMPILER_LAUNCHER=${launcher}")
endif()
step("configure target" configure)
set(build "${CMAKE_COMMAND}" --build "${target_build}")
step("build target" build)

set(fuzzer "${target_build}/ccts-fuzz-intake")
# Leaks are not this test's subject (LibTorch keeps its allocations at exit).
# An allocation over 512 MiB fails (malloc returns null, LibTorch throws), as
# under a memory limit: a case asking for 8 GiB is a case error, not a crash.
set(env "${CMAKE_COMMAND}" -E env
    "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=512")
file(GLOB regressions "${SOURCE_DIR}/regressions/*")
set(replay ${env} "${fuzzer}" ${regressions})
step("replay ${SOURCE_DIR}/regressions/" replay)
set(mutant ${env} CCTS_MUTANT=intake_number_overflow_uncaught "${fuzzer}" ${regressions})
execute_process(COMMAND ${mutant} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "fuzz.adapter_intake: the regression inputs pass under CCTS_MUTANT=intake_number_overflow_uncaught")
endif()
message(STATUS "fuzz.adapter_intake: the regression inputs crash the mutant intake_number_overflow_uncaught (exit ${rc})")

set(make_seeds "${CMAKE_COMMAND}" -E env "PYTHONPATH=${ROOT}" "${PYTHON}" "${SOURCE_DIR}/seeds.py" "${seeds}")
step("seeds" make_seeds)
# -timeout: one input for longer than that is a hang; -rss_limit_mb: a runaway allocation.
set(fuzz ${env} "${fuzzer}" -max_total_time=${SECONDS} -timeout=20 -rss_limit_mb=6144 -print_final_stats=1
    "-artifact_prefix=${artifacts}/" "${corpus}" "${seeds}")
execute_process(COMMAND ${fuzz} RESULT_VARIABLE rc ERROR_VARIABLE log)
string(REGEX MATCHALL "stat::[a-z_]+: *[0-9]+" stats "${log}")
message(STATUS "fuzz.adapter_intake: ${stats}")
if(NOT rc EQUAL 0)
  file(GLOB saved "${artifacts}/*")
  string(LENGTH "${log}" length)
  math(EXPR from "${length} - 6000")
  if(from LESS 0)
    set(from 0)
  endif()
  string(SUBSTRING "${log}" ${from} -1 tail)
  message(FATAL_ERROR "fuzz.adapter_intake: libFuzzer failed (exit ${rc}); input saved as ${saved}\n${tail}")
endif()
