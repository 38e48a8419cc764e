# Run a Windows program under the emulator and require the outcome ctest alone cannot express:
#   cmake -DCOMMAND=<emulator|exe|args, '|'-separated> -DEXPECT=fail|pass -DREGEX=<output regex> -P
# fail: a nonzero exit status (a crash under wine must not pass) and REGEX in the output;
# pass: exit status 0 and REGEX in the output.
string(REPLACE "|" ";" cmd "${COMMAND}")
execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 60)
message("exit status: ${rc}\noutput:\n${out}")
if(EXPECT STREQUAL "fail" AND rc EQUAL 0)
  message(FATAL_ERROR "expected a failure, the program exited 0")
elseif(EXPECT STREQUAL "pass" AND NOT rc EQUAL 0)
  message(FATAL_ERROR "expected exit status 0, got ${rc}")
endif()
if(NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the program did not exit normally: ${rc}")
endif()
if(REGEX AND NOT out MATCHES "${REGEX}")
  message(FATAL_ERROR "output does not match: ${REGEX}")
endif()
