# step(<what> <list variable>): for the -P scripts of the install and fuzz
# tests; runs the command the variable holds (a variable, not arguments, so
# that a "\;" inside an element survives), prints its time, and fails the test
# (named by STEP_TEST) when it fails.
function(step what command)
  string(TIMESTAMP start "%s")
  execute_process(COMMAND ${${command}} RESULT_VARIABLE rc)
  string(TIMESTAMP end "%s")
  math(EXPR seconds "${end} - ${start}")
  message(STATUS "${STEP_TEST}: ${what}: ${seconds} s (exit ${rc})")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${STEP_TEST}: ${what} failed (exit ${rc})")
  endif()
endfunction()
