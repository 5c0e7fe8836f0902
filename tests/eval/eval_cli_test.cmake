# ebm-eval's usage errors as a user meets them: exit 2 and name the problem and the fix. Inputs: EVAL.
include(${CMAKE_CURRENT_LIST_DIR}/../expect_run.cmake)

expect_run(0 "--reference-hybrids" ${EVAL} --help)
expect_run(2 "missing --model" ${EVAL})
expect_run(2 "--guide and --inpaint are two different modes" ${EVAL} --model m --guide arch --inpaint left)
expect_run(2 "--reference-hybrids is a mode of its own" ${EVAL} --model m --reference-hybrids --guide arch)
expect_run(2 "--reference-hybrids is a mode of its own" ${EVAL} --model m --reference-hybrids --inpaint left)
expect_run(2 "--guide-scale goes with --guide" ${EVAL} --model m --guide-scale 3)
expect_run(2 "expected left, right, top or bottom" ${EVAL} --model m --inpaint middle)
expect_run(1 "cannot open" ${EVAL} --model /nonexistent/m.safetensors --reference-hybrids)
