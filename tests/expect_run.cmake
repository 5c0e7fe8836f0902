# expect_run(CODE FRAGMENT COMMAND...): runs a program as a user would and fails the CMake script
# test unless it exits with CODE and prints FRAGMENT (stdout or stderr). Shared by the CLI tests.
function(expect_run code fragment)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL code)
    message(FATAL_ERROR "expected exit ${code}, got ${rc} from: ${ARGN}\n${out}\n${err}")
  endif()
  string(FIND "${out}${err}" "${fragment}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${fragment}' in the output of: ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
