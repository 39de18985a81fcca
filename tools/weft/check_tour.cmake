# ctest script: run the weft command and check what it says.
#   cmake -DWEFT=/path/to/weft -P check_tour.cmake
#
# - `weft --help` and `weft list` succeed; list names every lesson below;
# - an unknown command, lesson or option exits with code 2;
# - `weft tour --quick` exits 0 and prints the summary table;
# - `weft tour --quick --json`: thread_safe_visits reports exactly the
#   expected total with the mutex and with the atomic add; thread_visits
#   reports a total no greater than expected (it is NOT required to lose
#   updates: on one CPU it may not).
if(NOT WEFT)
  message(FATAL_ERROR "pass -DWEFT=<path to the weft binary>")
endif()

function(run_weft out_rc out_stdout)
  execute_process(COMMAND ${WEFT} ${ARGN}
    RESULT_VARIABLE rc OUTPUT_VARIABLE so ERROR_VARIABLE se)
  set(${out_rc} ${rc} PARENT_SCOPE)
  set(${out_stdout} "${so}" PARENT_SCOPE)
  set(last_stderr "${se}" PARENT_SCOPE)
endfunction()

set(failures 0)
macro(fail msg)
  message(SEND_ERROR "FAIL: ${msg}")
  math(EXPR failures "${failures} + 1")
endmacro()

# ---- the command line ----------------------------------------------------
run_weft(rc out --help)
if(NOT rc EQUAL 0 OR NOT out MATCHES "usage: weft")
  fail("weft --help: exit ${rc}")
endif()

run_weft(rc out list)
if(NOT rc EQUAL 0)
  fail("weft list: exit ${rc}")
endif()
foreach(name start_new_thread start_new_threads thread_visits thread_safe_visits
             thread_local producer_consumer cpu_bound_pool io_bound chunk_size
             co_starvation co_visits amdahl proc_cpu proc_crash when_not_to_bother)
  if(NOT out MATCHES " ${name} ")
    fail("weft list does not list ${name}")
  endif()
endforeach()

foreach(bad "no_such_command" "demo;no_such_lesson" "tour;--no-such-option"
            "tour;--scale;-1" "demo")
  run_weft(rc out ${bad})
  if(NOT rc EQUAL 2)
    fail("weft ${bad}: exit ${rc}, expected 2")
  endif()
  if(last_stderr STREQUAL "")
    fail("weft ${bad}: no error message")
  endif()
endforeach()

# ---- the tour, as a person sees it ---------------------------------------
run_weft(rc out tour --quick)
message("${out}")
if(NOT rc EQUAL 0)
  message("${last_stderr}")
  fail("weft tour --quick: exit ${rc}")
endif()
if(NOT out MATCHES "== Summary ==")
  fail("weft tour --quick printed no summary table")
endif()

# ---- the tour's figures, as a program reads them -------------------------
run_weft(rc out tour --quick --json)
if(NOT rc EQUAL 0)
  message("${last_stderr}")
  fail("weft tour --quick --json: exit ${rc}")
endif()

# The value of figure KEY of LESSON, or "" if it was not printed.
function(figure lesson key outvar)
  string(REGEX MATCH "\"lesson\":\"${lesson}\",\"figure\":\"${key}\",[^\n]*\"value\":([0-9.eE+-]+)"
         m "${out}")
  set(${outvar} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

figure(thread_safe_visits expected safe_expected)
figure(thread_safe_visits mutex_total mutex_total)
figure(thread_safe_visits atomic_total atomic_total)
message("thread_safe_visits: expected ${safe_expected}, mutex ${mutex_total}, atomic ${atomic_total}")
if(safe_expected STREQUAL "" OR NOT safe_expected GREATER 0)
  fail("thread_safe_visits printed no expected total")
elseif(NOT mutex_total STREQUAL safe_expected)
  fail("thread_safe_visits with a mutex: ${mutex_total}, expected exactly ${safe_expected}")
elseif(NOT atomic_total STREQUAL safe_expected)
  fail("thread_safe_visits with an atomic add: ${atomic_total}, expected exactly ${safe_expected}")
endif()

figure(thread_visits expected race_expected)
foreach(k total total_1 total_2 total_3)
  figure(thread_visits ${k} race_total)
  message("thread_visits ${k}: ${race_total} of ${race_expected}")
  if(race_total STREQUAL "" OR race_expected STREQUAL "")
    fail("thread_visits printed no ${k} or no expected total")
  elseif(race_total GREATER race_expected)
    fail("thread_visits ${k}: ${race_total} is above the expected ${race_expected}")
  endif()
endforeach()

# The pool lessons report their fits and timings (values depend on the
# machine; only their presence and range are checked).
foreach(pair "io_bound;io_sequential" "io_bound;io_threads" "io_bound;io_coroutines"
             "io_bound;cpu_sequential" "io_bound;cpu_threads" "io_bound;cpu_coroutines"
             "cpu_bound_pool;serial_fraction" "cpu_bound_pool;speedup_w1" "chunk_size;adaptive"
             "amdahl;serial_fraction" "amdahl;serial_share" "when_not_to_bother;tiny_ratio")
  list(GET pair 0 l)
  list(GET pair 1 k)
  figure(${l} ${k} v)
  message("${l} ${k}: ${v}")
  if(v STREQUAL "")
    fail("${l} printed no ${k}")
  endif()
endforeach()
# Where processes ran (proc_cpu timed them), io_bound shows them too.
figure(proc_cpu processes proc_v)
if(NOT proc_v STREQUAL "")
  foreach(k io_processes cpu_processes)
    figure(io_bound ${k} v)
    message("io_bound ${k}: ${v}")
    if(v STREQUAL "")
      fail("io_bound printed no ${k} though proc_cpu ran processes")
    endif()
  endforeach()
endif()
# Coroutines: no lock and still exact; the watchdog named the hog.
figure(co_visits expected co_expected)
figure(co_visits cooperative_total co_total)
message("co_visits: expected ${co_expected}, total without a lock ${co_total}")
if(co_expected STREQUAL "" OR NOT co_total STREQUAL co_expected)
  fail("co_visits: the cooperative total ${co_total} is not exactly ${co_expected}")
endif()
figure(co_starvation hog_reports co_reports)
message("co_starvation: watchdog reports naming the cruncher: ${co_reports}")
if(co_reports STREQUAL "" OR co_reports LESS 1)
  fail("co_starvation: the watchdog did not name the cruncher")
endif()

figure(cpu_bound_pool serial_fraction s)
figure(amdahl serial_fraction s2)
foreach(x ${s} ${s2})
  if(x LESS 0 OR x GREATER 1)
    fail("a fitted serial fraction out of [0, 1]: ${x}")
  endif()
endforeach()

string(REGEX MATCH "\"tour\":\"done\",\"lessons\":([0-9]+),\"failed\":([0-9]+)" m "${out}")
if(NOT m OR NOT CMAKE_MATCH_2 EQUAL 0)
  fail("the JSON tour did not end with a clean summary line")
endif()

# Every lesson line and the tour line carry the host's steal share, 0 to 1.
string(REGEX MATCHALL "\"steal\":[0-9.]+" steals "${out}")
list(LENGTH steals nsteal)
string(REGEX MATCHALL "\"order\":" orders "${out}")
list(LENGTH orders nlessons)
math(EXPR want_steal "${nlessons} + 1")
if(NOT nsteal EQUAL want_steal)
  fail("${nsteal} steal shares for ${nlessons} lessons and the tour")
endif()
foreach(st ${steals})
  string(REPLACE "\"steal\":" "" v "${st}")
  if(v GREATER 1)
    fail("a steal share above 1: ${v}")
  endif()
endforeach()

if(failures GREATER 0)
  message(FATAL_ERROR "${failures} check(s) failed")
endif()
