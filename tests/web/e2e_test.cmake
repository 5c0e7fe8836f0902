# The page in headless Chromium. Inputs: NODE, MAKE_MODEL, PRESET, SERVE, SITE, WORK, SCRIPT.
# Screenshots are left in WORK (page.png, phone.png, unreachable.png) as test artifacts.
get_filename_component(tests_dir ${SCRIPT} DIRECTORY)
if(NOT EXISTS ${tests_dir}/node_modules/playwright-core)
  message(FATAL_ERROR "playwright-core is missing: run 'npm ci' in ${tests_dir} "
                      "(scripts/test.sh and scripts/install-deps.sh --tests do)")
endif()
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${MAKE_MODEL} ${PRESET} ${WORK}/../e2e_model.safetensors 17 f16
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model failed")
endif()
# A classifier with random weights over the eight subtypes, so the page labels the samples.
execute_process(COMMAND ${MAKE_MODEL} ${PRESET} ${WORK}/../e2e_classifier.safetensors 5 f16
                "arch_deck,arch_through,beam_girder,beam_vpier,cable_fan,cable_harp,suspension_inclined,suspension_vertical"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (classifier) failed")
endif()
# A noise-conditional model (the unet preset, random weights), opened from disk by one test.
get_filename_component(presets_dir ${PRESET} DIRECTORY)
execute_process(COMMAND ${MAKE_MODEL} ${presets_dir}/unet.json ${WORK}/../e2e_denoiser.safetensors 3 f16
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (denoiser) failed")
endif()
# And one that carries a weaker network for autoguidance (format 3).
execute_process(COMMAND ${MAKE_MODEL} ${presets_dir}/unet.json ${WORK}/../e2e_autoguided.safetensors 4 f16 ""
                        autoguide RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_test_model (autoguided) failed")
endif()
set(ENV{EBM_DENOISER} ${WORK}/../e2e_denoiser.safetensors)
set(ENV{EBM_AUTOGUIDED} ${WORK}/../e2e_autoguided.safetensors)
set(ENV{EBM_CLASSIFIER} ${WORK}/../e2e_classifier.safetensors)
set(ENV{EBM_SERVE} ${SERVE})
set(ENV{EBM_SITE} ${SITE})
set(ENV{EBM_WORK} ${WORK})
set(ENV{EBM_MODEL} ${WORK}/../e2e_model.safetensors)
execute_process(COMMAND ${NODE} --test ${SCRIPT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "end-to-end test failed (exit ${rc}); screenshots in ${WORK}")
endif()
message(STATUS "screenshots: ${WORK}/page.png ${WORK}/phone.png ${WORK}/unreachable.png")
